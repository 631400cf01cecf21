"""The span attack's part of a result: every dense layer's row space, the one read, and how the rebuilding ran.

Its premise is the row space itself: a layer applies when its rows are a proper subspace spanned by at most
n inputs (:mod:`auditkit.attacks.span.spectrum`). None applying makes the attack not applicable (never an
all-clear); a row space only approximately spanned by n inputs, or of features rather than inputs, under-states
the leakage (weak). A null result is never an all-clear: a training input whose gradients vanished early (a
large margin) leaves its share of the weights under rounding, and no check here tells that apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from auditkit.attacks.base import AttackFacts
from auditkit.scoring.verdict import Concern

NO_LAYER = "no dense layer (nn.Linear) to read"
OUTSIDE = 0.01  # a training sample's residual above this: off the row space (members of clean spans: <= 3e-4)


@dataclass(frozen=True, kw_only=True)
class SpanFacts(AttackFacts):
    """How the span attack read the victim: each dense layer's span, the layer read, the rebuilding."""

    layers: list[dict] = field(default_factory=list)  # one LayerSpan (as a mapping) per dense layer, model order
    layer: str = ""  # the layer whose row space the membership test reads ('' when none applies)
    clean_tail: float = math.nan  # the config's largest tail of a row space read exactly
    programs: int = 0  # linear programs solved to rebuild inputs
    reads_inputs: bool = True  # the layer read takes the inputs themselves (else features: nothing to rebuild)
    reason: str = ""  # why the attack does not apply ('' when it does)
    members_outside: int = -1  # training samples off the row space (the auditor's check; -1: not checked)

    GLOSSARY: ClassVar[dict[str, str]] = {
        "span residual": "how much of an input's features at the layer read lie outside that layer's row space "
        "(0 = inside it, as every training input's is when training kept the rows in their span; 1 = orthogonal)",
        "row space": "the directions a dense layer's weight rows span; after gradient training from the initial "
        "weights, the span of the layer's inputs at the training samples",
        "spectral gap": "the largest ratio of consecutive singular values among the first n + 1, and the rank "
        "after it: the capacity picture (a CNN's dense layer of rank 2-3 holds little of its inputs); the test "
        "itself projects on the top n directions",
        "tail": "the share of the weights' squared singular values beyond the n-th (0: the rows are spanned by "
        "n inputs; large: noise, Adam or the initial weights not given)",
        "rebuilt": "identified, and equal to the training image within 0.05 at every pixel (or SSIM at least 0.9)",
    }
    HEADLINE: ClassVar[tuple[str, ...]] = ("span_rank", "span_gap", "span_tail", "span_dimension")
    DISTANCE: ClassVar[str] = "span_residual"

    def read(self) -> dict[str, Any]:
        """The layer read, as saved ({} when none applies)."""
        return next((layer for layer in self.layers if layer["name"] == self.layer), {})

    def inapplicable(self) -> str:
        """Why the attack cannot read this victim ('' when it can)."""
        return self.reason

    def concerns(self, train_accuracy: float, centred: bool) -> list[Concern]:
        """A row space read without a clear gap, or one of features (no inputs rebuilt), under-states the leakage."""
        layer, found = self.read(), []
        if not layer:
            return found
        if not layer["tail"] <= self.clean_tail:
            found.append(
                Concern(
                    f"layer {layer['name']}'s rows are only near a {layer['dimension']}-dimensional span (tail "
                    f"{layer['tail']:.2g}): some members' residuals may be inflated",
                    False,
                )
            )
        if self.members_outside > 0:
            found.append(
                Concern(
                    f"{self.members_outside} training samples lie off the row space read (residual above "
                    f"{OUTSIDE:g}; the auditor's check): their share of the weights is below the weights' rounding, "
                    "or training did not keep it",
                    False,
                )
            )
        if not self.reads_inputs:
            reason = f"layer {layer['name']} reads features computed by the layers before it, not inputs"
            found.append(Concern(reason + ": no inputs were rebuilt", False))
        elif not self.programs:
            found.append(Concern("no linear programs were run (attack.programs 0): no inputs were rebuilt", False))
        return found

    def headline(self) -> dict[str, Any]:
        """The layer read: its rank at the gap, the gap, the tail and the directions projected on (NaN: none)."""
        layer = self.read()
        keys = ("rank", "gap", "tail", "dimension")
        return {f"span_{key}": layer[key] if layer else math.nan for key in keys}

    def sentence(self) -> str:
        """The layer read, for the CLI's headline."""
        layer = self.read()
        if not layer:
            return f"span attack not applicable: {self.reason}"
        return f"row space of layer {layer['name']}: {layer['dimension']} of {layer['inputs']} dimensions"

    def premise_cells(self) -> list[tuple[str, float, str, str]]:
        """The spectral gap and the tail of the layer read."""
        layer = self.read()
        missing = self.reason or "not recorded"
        return [
            ("spectral gap", layer.get("gap", math.nan), missing, f"at rank {layer.get('rank', '-')}"),
            ("tail", layer.get("tail", math.nan), missing, f"exact up to {self.clean_tail:g}"),
        ]

    def describe(self) -> list[str]:
        """How the layers read and the rebuilding ran."""
        read = f"{len(self.layers)} dense layer(s) read, {self.dtype} on {self.device}, {self.seconds:.0f} s"
        lines = [f"Attack span: {read}."]
        layer = self.read()
        if not layer:
            lines.append(f"Not applicable: {self.reason}.")
            return lines
        fitted = "" if layer["init_multiple"] is None else f" (W_T - {layer['init_multiple']:.3f} W_0)"
        lines.append(
            f"Layer {layer['name']}{fitted}: rank {layer['rank']} at a gap of {layer['gap']:.3g}, tail "
            f"{layer['tail']:.2g}, membership read on {layer['dimension']} of {layer['inputs']} input dimensions."
        )
        if self.programs:
            lines.append(f"{self.programs} linear programs in its row space reached {self.candidates} inputs.")
        return lines

    @classmethod
    def from_dict(cls, values: dict) -> SpanFacts:
        """Read back :meth:`to_dict`: a layer's number saved as null (NaN in JSON) is NaN again."""
        facts = super().from_dict(values)
        numbers = ("gap", "tail")
        layers = [
            {**layer, **{k: math.nan if layer.get(k) is None else layer[k] for k in numbers}} for layer in facts.layers
        ]
        return dataclasses.replace(facts, layers=layers)

    def table(self) -> pd.DataFrame:
        """One row per dense layer: its spectrum and why it was or was not read."""
        columns = ["name", "inputs", "outputs", "rank", "gap", "dimension", "tail", "init_multiple", "reason"]
        return pd.DataFrame(self.layers, columns=columns)
