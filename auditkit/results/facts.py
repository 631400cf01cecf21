"""The facts a result records besides its counts: a DP mechanism, a trained victim, and a whole run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from auditkit.environment import DTYPE_NOTES, describe_device, versions
from auditkit.storage.files import to_jsonable
from auditkit.storage.safe_load import from_json_fields

Accountant = Literal["rdp", "prv", "gdp"]  # the Opacus accountants an epsilon can come from


@dataclass(frozen=True)
class PrivacyFacts:
    """One DP-SGD mechanism, from its plan to the results: the noise and sampling that ran (or will run) and
    what its accountant guarantees at ``delta``. ``epochs`` and ``batch_size`` are 0 when training ran
    elsewhere (only the sample rate and steps are known)."""

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant_note: str = ""
    epochs: int = 0
    batch_size: int = 0


@dataclass(frozen=True)
class TrainingLog:
    """What training recorded: accuracies, final loss, epochs and time, the recipe actually run."""

    train_accuracy: float
    test_accuracy: float
    final_loss: float
    epochs: int
    seconds: float
    recipe: dict = field(default_factory=dict)  # optimizer settings (lr, weight_decay, compiled, ...)
    privacy: PrivacyFacts | None = None

    def to_dict(self) -> dict:
        """The JSON form."""
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> TrainingLog:
        """Read back :meth:`to_dict` (unknown keys ignored)."""
        privacy = values.get("privacy")
        return from_json_fields(cls, {**values, "privacy": PrivacyFacts(**privacy) if privacy else None})


@dataclass(frozen=True)
class VictimFacts:
    """The victim an audit attacked: the defense that produced it and what its training recorded."""

    defense: dict
    training: TrainingLog
    cached: bool = False  # loaded from the victim cache instead of trained in this run

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"defense": to_jsonable(self.defense), "training": self.training.to_dict(), "cached": self.cached}

    @classmethod
    def from_dict(cls, values: dict) -> VictimFacts:
        """Read back :meth:`to_dict`."""
        return cls(values["defense"], TrainingLog.from_dict(values["training"]), bool(values.get("cached", False)))

    @classmethod
    def trained_elsewhere(
        cls, privacy: PrivacyFacts | None, train_accuracy: float, test_accuracy: float = math.nan
    ) -> VictimFacts:
        """A model the user trained: its privacy as given (when trained with DP-SGD), its accuracies as
        measured on the data given (NaN without a test set), the rest unknown (NaN, 0 epochs)."""
        log = TrainingLog(train_accuracy, test_accuracy, math.nan, 0, math.nan, {}, privacy)
        if privacy is None:
            return cls({"kind": "none", "description": "trained by the user"}, log)
        return cls({"kind": "dp_sgd", "description": "trained by the user with DP-SGD"}, log)


@dataclass(frozen=True)
class RunFacts:
    """What makes a run reproducible, stored once per run: scenario, seed, device, versions, config."""

    scenario: str
    seed: int
    device: str
    dtype: str
    dtype_note: str
    threads: int
    versions: dict[str, str]
    config: dict  # the resolved scenario
    seconds: float = math.nan
    executor: str = "local"  # where the victims ran: this process, or Ray tasks of `threads` CPUs each
    reused: int = 0  # victims whose finished audit a resumed run reused: `seconds` is this call's work only

    @classmethod
    def collect(
        cls, name: str, seed: int, device, dtype: str, config: dict, seconds: float, executor: str = "local"
    ) -> RunFacts:
        """The facts of a run happening in this process (device description, threads, versions)."""
        return cls(
            executor=executor,
            scenario=name,
            seed=seed,
            device=describe_device(device),
            dtype=dtype,
            dtype_note=DTYPE_NOTES[dtype],
            threads=torch.get_num_threads(),
            versions=versions(),
            config=to_jsonable(config),
            seconds=seconds,
        )

    def to_dict(self) -> dict:
        """The JSON form."""
        return to_jsonable(asdict(self))

    @classmethod
    def of_saved_audit(cls, name: str, seed: int | None, device: str, dtype: str) -> RunFacts:
        """Facts for one audit saved from the Python API (``result.save``), which records no run: the seed,
        device and precision are its attack's; threads and versions are this process's, and say so."""
        facts = cls.collect(name, seed, torch.device(device), dtype, {}, math.nan)
        note = "one audit saved from the Python API; threads and versions are those of the process that rendered it"
        return dataclasses.replace(facts, config={"note": note})

    @classmethod
    def from_dict(cls, values: dict) -> RunFacts:
        """Read back :meth:`to_dict` (unknown keys ignored; a missing time reads NaN)."""
        seconds = values.get("seconds")
        return from_json_fields(cls, {**values, "seconds": math.nan if seconds is None else seconds})
