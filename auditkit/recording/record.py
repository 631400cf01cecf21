"""A training record as the audit reads it: the manifest checked (format, steps in order, every snapshot present
and unchanged, the model's parameters), the initial weights, the DP settings, and what an adaptive optimiser's
steps added to each weight matrix with its per-weight rescaling undone.

Adam moves a weight by ``-lr m / (sqrt(v) + eps)``: the momentum ``m`` is a combination of gradients, so of the
layer's inputs (the span attack's premise), but the division by ``sqrt(v)`` rescales every weight on its own
and takes the rows out of that span. The recorder multiplies each change by ``sqrt(v_hat) + eps`` as it goes
(AdamW: its decoupled decay added back first), after every step while ``v`` moves fast and at growing gaps
later, and keeps the sums in its snapshots: the momentum's sum back, up to the drift of ``v`` within a gap.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from auditkit.errors import STRICT, DataError, first_error
from auditkit.storage.safe_load import load_weights, read_json_object
from auditkit.victims.user_model import unwrapped_name

RECORD_FORMAT = "auditkit-record/1"
MANIFEST_FILE = "manifest.json"
INITIAL_FILE = "initial.safetensors"
KEPT_STATE = ("exp_avg_sq",)  # the optimiser state a snapshot keeps: what the attacks read (Adam's rescaling)
ADAPTIVE = ("Adam", "AdamW")  # optimisers whose per-weight rescaling the record undoes


class RecordError(DataError):
    """A training record that cannot be read as it is: the message names the file and what is wrong."""


class Snapshot(BaseModel):
    """One snapshot the manifest lists: its step, its file, and the file's SHA-256 as it was written."""

    model_config = STRICT
    step: int = Field(ge=1)
    file: str = Field(pattern=r"^step_[0-9]{9}\.safetensors$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class OptimizerRecord(BaseModel):
    """The optimiser the record followed: its class, its first group's settings, how many groups it had."""

    model_config = STRICT
    class_: str = Field(alias="class")
    settings: dict
    groups: int = Field(ge=1)


class Manifest(BaseModel):
    """manifest.json, as the recorder writes it."""

    model_config = STRICT
    format: Literal["auditkit-record/1"]
    optimizer: OptimizerRecord
    parameters: list[str] = Field(min_length=1)
    every: int = Field(ge=1)
    batch_size: int | None
    steps: int = Field(ge=0)
    closed: bool
    snapshots: list[Snapshot]
    privacy: dict | None


@dataclass(frozen=True)
class TrainingRecord:
    """A checked training record (see :class:`auditkit.recording.recorder.TrainingRecorder`)."""

    folder: Path
    manifest: Manifest

    @classmethod
    def load(cls, folder: str | Path, model: nn.Module | None = None) -> TrainingRecord:
        """The record in ``folder``, checked: the manifest's fields, a closed record, snapshots in step order,
        each file present and unchanged since it was recorded, and (given ``model``) the model's parameters.

        Raises:
            RecordError: naming the file and what is wrong.
        """
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        values = read_json_object(path, RecordError, f"not found: is {folder} a training record?")
        try:
            manifest = Manifest.model_validate(values)
        except ValidationError as error:
            raise RecordError(f"{path}: {first_error(error)}") from None
        if not manifest.closed:
            raise RecordError(f"{path}: the record was not closed (call recorder.close() after training)")
        steps = [snapshot.step for snapshot in manifest.snapshots]
        if steps != sorted(set(steps)) or (steps and steps[-1] > manifest.steps):
            raise RecordError(f"{path}: snapshots out of step order or past the last step ({steps[:8]})")
        for snapshot in manifest.snapshots:
            file = folder / snapshot.file
            if not file.is_file():
                raise RecordError(f"{file}: missing (the manifest lists it)")
            if hashlib.sha256(file.read_bytes()).hexdigest() != snapshot.sha256:
                raise RecordError(f"{file}: changed since it was recorded (its SHA-256 is not the manifest's)")
        record = cls(folder, manifest)
        if sorted(record.initial_state) != sorted(manifest.parameters):
            raise RecordError(f"{folder / INITIAL_FILE}: its tensors are not the manifest's parameters")
        if model is not None:
            record.check_model(model)
        return record

    def check_model(self, model: nn.Module) -> None:
        """Refuse a record of another model: the parameters' names and shapes must be the model's."""
        shapes = {unwrapped_name(name): tuple(p.shape) for name, p in model.named_parameters()}
        for name, tensor in self.initial_state.items():
            if shapes.get(name) != tuple(tensor.shape):
                raise RecordError(
                    f"{self.folder}: a record of another model (its {name!r} is {tuple(tensor.shape)}, the model's "
                    f"{shapes.get(name, 'missing')})"
                )

    @functools.cached_property
    def initial_state(self) -> dict[str, torch.Tensor]:
        """The weights training started from, named as in the model (read once)."""
        return load_weights(self.folder / INITIAL_FILE, RecordError)

    def privacy(self) -> dict | None:
        """The DP-SGD settings an Opacus engine ran with (``Auditor.audit``'s ``privacy`` mapping), or None."""
        return self.manifest.privacy

    @property
    def adaptive(self) -> bool:
        """Whether training rescaled each weight on its own (Adam, AdamW): then :attr:`updates` applies."""
        return self.manifest.optimizer.class_ in ADAPTIVE

    @functools.cached_property
    def updates(self) -> dict[str, torch.Tensor]:
        """What training added to each weight matrix (name -> (out, in), float64) with Adam's rescaling undone:
        the snapshots' ``update/`` tensors summed (read once, however many audits use the record); empty for
        an optimiser without per-weight rescaling."""
        total: dict[str, torch.Tensor] = {}
        for snapshot in self.manifest.snapshots if self.adaptive else ():
            for key, tensor in load_weights(self.folder / snapshot.file, RecordError).items():
                if key.startswith("update/"):
                    name = key.removeprefix("update/")
                    total[name] = total.get(name, 0) + tensor.double()
        return {name: update for name, update in total.items() if bool(update.abs().sum() > 0)}


def record_inputs(record: str | Path | TrainingRecord, model: nn.Module) -> tuple[TrainingRecord, dict, str]:
    """A record as the audit uses it: read and checked against ``model``, the dense layers' updates keyed by
    layer name (an Adam or AdamW record), and a note saying what the record holds."""
    record = record if isinstance(record, TrainingRecord) else TrainingRecord.load(record)
    record.check_model(model)
    updates = {name.removesuffix(".weight"): update for name, update in record.updates.items()}
    manifest = record.manifest
    note = (
        f"training record {record.folder.name}: {manifest.optimizer.class_}, {manifest.steps} steps, "
        f"{len(manifest.snapshots)} snapshots (one every {manifest.every} steps)"
        + ("; its per-weight rescaling undone as it trained, for the span attack" if updates else "")
    )
    return record, updates, note
