"""The KKT attack's part of a result: how its restarts ran, and its premise (the victim's KKT residual, the
attack's convergence) as the verdict and the report read it.

The premise thresholds on the victim's KKT residual (at the true training set, multipliers fitted) come from
measured victims (MNIST parity, 784-500-500-1; issues 11 and 14; ``benchmarks/results/``): conclusive at or
under CONCLUSIVE_RESIDUAL, weak (counts under-state) up to WEAK_RESIDUAL, inconclusive beyond. Uncentred
inputs (raw [0, 1] pixels) are weak too (``benchmarks/results/input_preparation.md``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from auditkit.attacks.base import AttackFacts
from auditkit.attacks.kkt.config import SELECTION_RULES
from auditkit.attacks.kkt.control import StartControl
from auditkit.attacks.kkt.convergence import Convergence
from auditkit.scoring.verdict import Concern
from auditkit.storage.files import to_jsonable

CONCLUSIVE_RESIDUAL = 0.3
WEAK_RESIDUAL = 0.7
UNKNOWN = Convergence(math.nan, math.nan, math.nan, 0)  # a result saved before convergence was measured


@dataclass(frozen=True, kw_only=True)
class KKTFacts(AttackFacts):
    """How the KKT attack ran (restarts, their settings, scores and fates) and its premise for this victim."""

    selection_rule: str
    selection: str  # what the rule means
    restarts: int
    restart_settings: dict[str, list[float]]
    restart_scores: list[float]
    final_loss: list[float]
    relative_residual: list[float]  # sqrt(stationarity) / ||theta|| per restart
    selected_restarts: list[int]
    early_stopped_restarts: list[int]
    diverged: list[dict]  # [{"restart": r, "step": s}]
    alpha_scale: float
    passes: int = 1  # deflation's searches; restart r ran in pass r // (restarts / passes)
    victim_residual: float = math.nan  # the victim's KKT residual at its true training set (set by assess)
    convergence: Convergence = field(default=UNKNOWN)  # how far the attack got (set by assess)
    start_control: StartControl | None = None  # run by the auditor when no leak was found (set by control)
    linear: bool = False  # the model has no hidden layer: nothing to search (not applicable)

    GLOSSARY: ClassVar[dict[str, str]] = {
        "KKT residual": "how far the weights are from a KKT point of the max-margin problem (0 = at one, 1 = none "
        "of the weights explained by the training samples' gradients): the KKT attack's premise",
        "attack residual": "the KKT residual the attack's best restart's candidates leave (multipliers refitted, "
        "exact ReLU), beside the victim's at its true training set: the attack converged when it is no larger and "
        "its loss no longer falls fast; otherwise a low count is not evidence of safety",
        "restart": "one independent run of the attack's optimisation; their candidates are pooled",
    }
    HEADLINE: ClassVar[tuple[str, ...]] = (
        "victim_kkt_residual",
        "attack_kkt_residual",
        "attack_convergence",
        "attack_relative_residual",
    )
    PREMISE: ClassVar[str] = "KKT residual"  # the glossary term of the victim's premise measure
    KEY: ClassVar[str] = "kkt"  # what the headline's residual keys are named by
    CONCLUSIVE: ClassVar[float] = CONCLUSIVE_RESIDUAL
    WEAK: ClassVar[float] = WEAK_RESIDUAL
    WHERE: ClassVar[str] = "a KKT point"  # what a low premise residual says the weights are near
    NEEDS_FIT: ClassVar[bool] = True  # the premise needs zero training error
    NEXT_STEP: ClassVar[str] = (  # what to do when the premise fails
        "a model trained by minibatch SGD is read by the owner's attack: give the weights training started from "
        "(--init, init=); for Adam or AdamW, those weights still give the span attack's membership reading"
    )

    LINEAR: ClassVar[str] = (
        "the model is linear (no hidden layer): its KKT condition makes each output's weight row one weighted sum of "
        "the training inputs, a single direction that cannot hold the training samples (a linear probe); the span "
        "attack beside it reads what such weights do say"
    )

    @classmethod
    def of_linear_model(cls, name: str, rule: str, **where) -> KKTFacts:
        """The facts of a search that did not run because the model is linear (``where``: seed, device, dtype)."""
        empty = {key: [] for key in ("restart_scores", "final_loss", "relative_residual", "selected_restarts")}
        return cls(
            name=name,
            selection_rule=rule,
            selection=SELECTION_RULES[rule],
            restarts=0,
            candidates=0,
            restart_settings={},
            early_stopped_restarts=[],
            diverged=[],
            alpha_scale=math.nan,
            seconds=0.0,
            linear=True,
            **empty,
            **where,
        )

    def inapplicable(self) -> str:
        """Why the search cannot read this model ('' when it can): a linear model (no hidden layer)."""
        return self.LINEAR if self.linear else ""

    @property
    def best_restart(self) -> int | None:
        """The restart with the lowest final attack loss (None when every restart diverged)."""
        losses = np.array(self.final_loss, dtype=float)
        return int(np.nanargmin(losses)) if np.isfinite(losses).any() else None

    def concerns(self, train_accuracy: float, centred: bool) -> list[Concern]:
        """The victim's premise (:meth:`victim_concerns`) and the attack's (it converged)."""
        found = self.victim_concerns(train_accuracy, centred)
        if self.convergence.level != "converged":
            found.append(Concern(self.convergence.reason(), self.convergence.level == "not_converged"))
        return found

    def victim_concerns(self, train_accuracy: float, centred: bool) -> list[Concern]:
        """The victim's premise alone: near its point (a KKT point), fits its training set, centred inputs."""
        found, residual = [], self.victim_residual
        if math.isnan(residual) or residual > self.WEAK:
            reason = f"the weights are far from {self.WHERE} (residual {residual:.2f} > {self.WEAK}): the attack's "
            found.append(Concern(f"{reason}premise fails (next: {self.NEXT_STEP})", True))
        elif residual > self.CONCLUSIVE:
            reason = f"the weights are only near {self.WHERE} (residual {residual:.2f} > {self.CONCLUSIVE}): "
            found.append(Concern(reason + "counts under-state the leakage", False))
        if not centred:
            reason = "the inputs are not centred (their training mean is not 0): the attack was measured weaker there"
            found.append(Concern(reason + ", so counts under-state the leakage", False))
        if self.NEEDS_FIT and not train_accuracy == 1.0:
            reason = f"the model does not fit its training set (accuracy {train_accuracy:.3f}; the premise needs 1)"
            found.append(Concern(reason, True))
        return found

    def null_evidence(self) -> tuple[list[Concern], str]:
        """The start control's reading: the weights hold the training set (fatal: the search missed it), the
        runs did not move (weak), no control (weak), or the objective does not single the training set out
        (the sentence that makes a null result evidence)."""
        control = self.start_control
        if control is None:
            reason = (
                "no start control was run (it needs non-members), so the weights may hold training samples as "
                "solutions this search did not reach"
            )
            return [Concern(reason, False)], ""
        if control.reading == "alike":
            return [], control.sentence()
        return [Concern(control.sentence(), control.reading == "holds")], ""

    def headline(self) -> dict[str, Any]:
        """The victim's and the attack's premise residuals, the convergence level, the best restart's own residual."""
        best = self.best_restart
        return {
            f"victim_{self.KEY}_residual": self.victim_residual,
            f"attack_{self.KEY}_residual": self.convergence.attack_residual,
            "attack_convergence": self.convergence.level,
            "attack_relative_residual": self.relative_residual[best] if best is not None else math.nan,
        }

    def sentence(self) -> str:
        """``attack residual A (victim V: level)``."""
        level = self.convergence.level.replace("_", " ")
        return f"attack residual {self.convergence.attack_residual:.2f} (victim {self.victim_residual:.2f}: {level})"

    def premise_cells(self) -> list[tuple[str, float, str, str]]:
        """(glossary term, value, why it may be missing, a note) per premise number, for the report."""
        missing = "no candidates, or a result saved before it was measured"
        level = self.convergence.level.replace("_", " ")
        return [
            (self.PREMISE, self.victim_residual, "could not be computed", ""),
            ("attack residual", self.convergence.attack_residual, missing, level),
        ]

    def describe(self) -> list[str]:
        """Restarts, precision, time, the selection rule and divergences."""
        passes = f" in {self.passes} deflation passes" if self.passes > 1 else ""
        return [
            f"Attack {self.name}: {self.restarts} restart(s){passes}, {self.dtype} on {self.device}, "
            f"{self.seconds:.0f} s; "
            f"selection rule {self.selection_rule}: {self.selection}; {len(self.diverged)} restart(s) diverged."
        ]

    def table(self) -> pd.DataFrame:
        """One row per restart: its settings, last loss, selection score and fate."""

        def fate(restart: int) -> str:
            if restart in self.selected_restarts:
                return "pooled"
            return "early-stopped" if restart in self.early_stopped_restarts else "not selected"

        per_pass = {"pass": [r * self.passes // self.restarts for r in range(self.restarts)]} if self.passes > 1 else {}
        return pd.DataFrame(
            {
                "restart": range(self.restarts),
                **per_pass,
                **self.restart_settings,
                "last loss": self.final_loss,
                "score": self.restart_scores,
                "fate": [fate(r) for r in range(self.restarts)],
            }
        )

    def to_dict(self) -> dict:
        """The JSON form, the convergence with its derived ratio and level."""
        values = asdict(self)
        values["convergence"] = self.convergence.to_dict()
        values["start_control"] = self.start_control.to_dict() if self.start_control else None
        return to_jsonable(values)

    @classmethod
    def from_dict(cls, values: dict) -> KKTFacts:
        """Read back :meth:`to_dict`, or a result saved before the premise lived here (top-level fields)."""

        def number(value) -> float:
            return math.nan if value is None else float(value)

        floats = {
            key: [number(v) for v in values[key]] for key in ("restart_scores", "final_loss", "relative_residual")
        }
        saved = values.get("convergence")
        convergence = UNKNOWN
        if saved is not None:
            parts = (number(saved[key]) for key in ("attack_residual", "victim_residual", "loss_fall"))
            convergence = Convergence(*parts, int(saved["steps"]))
        fixed = {
            **values,
            **floats,
            "alpha_scale": number(values["alpha_scale"]),
            "victim_residual": number(values.get("victim_residual")),
            "convergence": convergence,
            "start_control": StartControl.from_dict(values["start_control"]) if values.get("start_control") else None,
        }
        return super().from_dict(fixed)
