"""The attack seam: what every attack is configured by, is given, returns and says about itself.

An attack is a registered class (:mod:`auditkit.attacks.registry`) with a validated config (an
:class:`AttackConfig` whose ``name`` picks the attack in a scenario's ``attack:``). :meth:`Attack.run` is
what an attacker does: the victim model and what the attacker knows in, candidate inputs out
(:class:`AttackOutput`). :meth:`Attack.assess` is the auditor's part: with the true training set it judges
the attack's own premise and convergence and writes them into the attack's typed facts
(:class:`AttackFacts`), which the verdict, the summary and the report read through the same methods for
every attack.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from auditkit.budget import check_memory
from auditkit.errors import STRICT, ConfigError, UnsupportedModelError, first_error
from auditkit.scoring.metrics import identification_bytes
from auditkit.scoring.verdict import Concern
from auditkit.storage.files import to_jsonable
from auditkit.storage.safe_load import from_json_fields

ProgressCallback = Callable[[int, float], None]  # (step, current loss)


class AttackConfig(BaseModel):
    """The settings every attack's config shares: its registered ``name`` (the scenario's discriminator)."""

    model_config = STRICT | {"frozen": True}

    name: str

    def __init__(self, **values) -> None:
        """``KKTConfig(steps=...)`` from Python: a bad setting is one :class:`ConfigError` line, as from a file."""
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(first_error(error, "attack")) from None

    @classmethod
    def validated(cls, values: dict, field: str = "attack") -> AttackConfig:
        """Validate ``values``; a bad setting raises :class:`ConfigError` naming ``field.setting``.

        Args:
            values: the settings (``name`` may be left out: it is this config's attack).
            field: how the error names the section.

        Returns:
            The frozen config.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(first_error(error, field)) from None


@dataclass(frozen=True)
class AttackerKnowledge:
    """What the attack may use besides the weights. Arrays are flat rows in the victim's input space."""

    n_train: int
    lower: np.ndarray  # smallest valid input per dimension
    upper: np.ndarray  # largest valid input per dimension
    reference_inputs: np.ndarray | None = None  # public (non-member) data of the same distribution
    ground_truth: np.ndarray | None = None  # the training inputs: the auditor's view, never an outsider's
    pixel_offset: np.ndarray | None = None  # added to a scaled input to get its pixels (e.g. the training mean)
    pixel_scale: np.ndarray | None = None  # what an input is multiplied by first (the std it was divided by)
    initial: nn.Module | None = None  # the model at the weights training started from: the owner's knowledge
    image_shape: tuple[int, ...] | None = None  # one input as an image ((H, W) or (C, H, W)), when it is one
    updates: dict | None = None  # dense layer name -> what training added, an optimiser's rescaling undone (a record)

    def to_pixels(self, inputs: np.ndarray) -> np.ndarray:
        """Flat input rows as flat pixel rows (``inputs * pixel_scale + pixel_offset``, each when given)."""
        scale = 1.0 if self.pixel_scale is None else np.asarray(self.pixel_scale).reshape(1, -1)
        offset = 0.0 if self.pixel_offset is None else np.asarray(self.pixel_offset).reshape(1, -1)
        return np.asarray(inputs) * scale + offset


@dataclass(frozen=True, kw_only=True)
class AttackFacts:
    """How an attack ran and what it says about its own premise: the typed, per-attack part of a result.

    Every attack's facts carry these fields; an attack adds its own in a subclass and overrides the
    methods below, which the verdict, the summary, the gate and the report call.
    """

    name: str
    candidates: int  # pooled candidates scored against the training set
    seconds: float
    device: str
    dtype: str
    seed: int | None = None  # None in results saved before it was recorded

    GLOSSARY: ClassVar[dict[str, str]] = {}  # terms the attack's report words use
    HEADLINE: ClassVar[tuple[str, ...]] = ()  # the keys of headline(), for the gate and the comparison
    DISTANCE: ClassVar[str] = ""  # the per-sample column of its membership distance ('' for an attack without)

    def inapplicable(self) -> str:
        """Why the attack cannot read this victim at all ('' when it can): the verdict is then 'not applicable',
        which says nothing about leakage either way."""
        return ""

    def concerns(self, train_accuracy: float, centred: bool) -> list[Concern]:
        """Where the premise falls short. An attack that states no premise cannot vouch for a low count."""
        return [Concern(f"the {self.name} attack states no premise to check, so it cannot vouch for a low count", True)]

    def null_evidence(self) -> tuple[list[Concern], str]:
        """What backs a result in which members were not identified more often than non-members: the concerns
        that keep it from being evidence, and a sentence for the finding when nothing does. An attack that
        checks nothing cannot back a null result."""
        reason = f"the {self.name} attack has no check that the weights do not hold what its search missed"
        return [Concern(reason, False)], ""

    def headline(self) -> dict[str, Any]:
        """The attack's own headline numbers (summary.json, comparison.csv, ``--fail-if``): none by default."""
        return {}

    def sentence(self) -> str:
        """The attack's state in the CLI's headline ('' when it has none to add)."""
        return ""

    def premise_cells(self) -> list[tuple[str, float, str, str]]:
        """(glossary term, value, why it may be missing, a note) per premise number the report shows: none."""
        return []

    def describe(self) -> list[str]:
        """What the report says about how the attack ran, a sentence each."""
        return [
            f"Attack {self.name}: {self.candidates} candidates, {self.dtype} on {self.device}, {self.seconds:.0f} s."
        ]

    def table(self) -> pd.DataFrame | None:
        """A detail table for the report (e.g. one row per restart), or None."""
        return None

    def to_dict(self) -> dict:
        """The JSON form (``name`` says which attack's facts to read it back as)."""
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> AttackFacts:
        """Read back :meth:`to_dict` (keys the class does not have are ignored, the simple types checked)."""
        return from_json_fields(cls, values)


@dataclass
class AttackOutput:
    """Candidates of an attack, pooled, with the facts of how it ran.

    ``lambdas`` (a weight per candidate, e.g. KKT multipliers) and ``restart`` (which run of the attack
    found it) default to NaN and 0; ``per_sample`` holds columns :meth:`Attack.assess` adds to the
    per-sample table (one value per training sample). ``distance``, for an attack with a membership test,
    scores any inputs (flat rows): lower is more likely a training sample.
    """

    candidates: np.ndarray  # (K, d), in the victim's input space
    labels: np.ndarray  # (K,) in the model's label encoding
    facts: AttackFacts
    lambdas: np.ndarray | None = None  # (K,)
    restart: np.ndarray | None = None  # (K,)
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (log points, runs)
    history_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    distance: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        count = len(self.candidates)
        self.lambdas = np.full(count, math.nan) if self.lambdas is None else self.lambdas
        self.restart = np.zeros(count, dtype=int) if self.restart is None else self.restart


@dataclass(frozen=True)
class ModelShape:
    """What the Auditor checks the data against: the model's input width and output count; and every
    layer's width, input first (what the attack's memory is estimated from)."""

    inputs: int
    outputs: int
    widths: tuple[int, ...] = ()


class Attack(ABC):
    """The base every attack implements; register one with :func:`auditkit.attacks.registry.register_attack`.

    Class attributes: ``name`` (what ``attack.name`` says), ``config_type`` (its :class:`AttackConfig`)
    and ``facts_type`` (its :class:`AttackFacts`).

    Example:
        >>> from auditkit.attacks.registry import build_attack
        >>> build_attack({"name": "kkt", "steps": 100}).steps
        100
    """

    name: ClassVar[str]
    config_type: ClassVar[type[AttackConfig]]
    facts_type: ClassVar[type[AttackFacts]] = AttackFacts
    needs_initial: ClassVar[bool] = False  # it cannot run without the initial weights (``AttackerKnowledge.initial``)
    reads_initial: ClassVar[bool] = False  # it reads them when given (an attack that needs them sets both)
    keeps_checkpoints: ClassVar[bool] = False  # its run() takes ``checkpoint=FOLDER`` (long searches: see KKT's)

    def __init__(self, config: AttackConfig | dict | None = None, **overrides) -> None:
        values = {**(config.model_dump() if isinstance(config, BaseModel) else dict(config or {})), **overrides}
        if values.setdefault("name", self.name) != self.name:
            raise ConfigError(f"attack.name: {values['name']!r} is not the {self.name} attack's config")
        self.config = self.config_type.validated(values)

    @property
    def steps(self) -> int:
        """Optimisation steps per run (the length of the progress bar; 0 for an attack that does not iterate)."""
        return int(getattr(self.config, "steps", 0))

    def missing_initial(self, argument: str, what: str) -> str:
        """The one line for an attack that ``needs_initial`` when ``argument`` did not give the initial weights
        (``what``: what to give there)."""
        return (
            f"{argument}: missing; the {self.name} attack explains the trained weights against the weights "
            f"training started from: give {what}"
        )

    def warning(self) -> str:
        """A warning about the settings themselves, printed before a run ('' for none)."""
        return ""

    def memory_bytes(self, n_train: int, widths: list[int], itemsize: int) -> int:
        """What the attack allocates at most for ``n_train`` samples on a network of ``widths`` (input first):
        0 here (an attack that keeps only its candidates)."""
        return 0

    def check(self, model: nn.Module) -> ModelShape:
        """The model's input width and output count, or :class:`UnsupportedModelError` when the attack
        cannot run on it. This default reads the first and last ``nn.Linear``."""
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UnsupportedModelError(f"the {self.name} attack needs a model with Linear layers")
        widths = (linears[0].in_features, *(linear.out_features for linear in linears))
        return ModelShape(linears[0].in_features, linears[-1].out_features, widths)

    def pooled_candidates(self, n_train: int, outputs: int) -> int:
        """How many candidates the attack returns at most for ``n_train`` samples: one each by default."""
        return n_train

    def memory_parts(self, n_train: int, widths: list[int], itemsize: int, nonmembers: int = 0) -> dict[str, int]:
        """What an audit by this attack allocates at most, by part: the attack itself, and matching its
        candidates to the ``n_train`` members and the ``nonmembers`` (every one of them user-controlled)."""
        candidates = self.pooled_candidates(n_train, widths[-1])
        return {
            "attack": self.memory_bytes(n_train, widths, itemsize),
            "identification": identification_bytes(candidates, n_train, nonmembers, widths[0]),
        }

    def check_memory(self, shape: ModelShape, n_train: int, itemsize: int, what: str, nonmembers: int = 0) -> None:
        """Refuse, before anything is allocated, an audit of ``n_train`` samples (and ``nonmembers``) on a model
        of ``shape`` that would need more than the memory budget (:mod:`auditkit.budget`); ``what`` names it."""
        check_memory(self.memory_parts(n_train, list(shape.widths), itemsize, nonmembers), what)

    @abstractmethod
    def run(
        self,
        model: nn.Module,
        knowledge: AttackerKnowledge,
        *,
        seed: int,
        device: torch.device | str,
        dtype: torch.dtype,
        progress: ProgressCallback | None = None,
    ) -> AttackOutput:
        """Attack ``model``.

        Args:
            model: the victim (left unchanged).
            knowledge: what the attacker knows besides the weights.
            seed: the attack's only source of randomness.
            device: where it computes.
            dtype: its working precision.
            progress: called as ``(step, loss)`` while it runs.

        An attack whose ``keeps_checkpoints`` is True also takes ``checkpoint``: a folder where it keeps its
        state as it runs, and from which a run of the same attack on the same victim continues after an
        interruption, bit for bit.

        Returns:
            Its candidates and facts.
        """

    def control(
        self,
        model: nn.Module,
        knowledge: AttackerKnowledge,
        output: AttackOutput,
        train: tuple,
        nonmembers: np.ndarray,
        *,
        seed: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> AttackOutput:
        """The auditor's check of a null result, run when members were not identified more often than
        non-members: whether the weights hold the training set where the search did not reach
        (:meth:`AttackFacts.null_evidence` reads it). This default checks nothing.

        Args:
            model: the victim.
            knowledge: what the attack was given.
            output: the attack's output, assessed.
            train: the training inputs and labels (float64 tensors): the auditor's view.
            nonmembers: (P, d) held-out inputs of the same distribution.
            seed, device, dtype: as the attack's own run.

        Returns:
            The output with its facts completed.
        """
        return output

    def assess(
        self, model: nn.Module, knowledge: AttackerKnowledge, output: AttackOutput, train: tuple
    ) -> AttackOutput:
        """The auditor's part: judge the premise and convergence with the true training set ``train``
        (inputs, labels as float64 tensors) and return the output with its facts (and per-sample columns)
        completed. This default adds nothing."""
        return output
