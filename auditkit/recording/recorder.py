"""The training recorder: attached to a model and its optimiser, it keeps what the attacks need of a training
run (the initial weights, the optimiser and its settings, snapshots of the weights and of the optimiser's state,
the DP engine's noise and sampling) in a folder, without changing the training loop."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import torch
from torch import nn

from auditkit.errors import ConfigError
from auditkit.recording.record import (
    ADAPTIVE,
    INITIAL_FILE,
    KEPT_STATE,
    MANIFEST_FILE,
    RECORD_FORMAT,
    TrainingRecord,
)
from auditkit.storage.files import atomic_path, ensure_writable, write_json
from auditkit.victims.user_model import unwrapped_name

READ_GROWTH = 1.1  # the gap between two reads of Adam's rescaling: a tenth of the steps so far, at most ``every``


class TrainingRecorder:
    """Keep a training run's record for the audit: one call before training, nothing in the loop.

    The recorder saves the initial weights at once, then after every ``every``-th optimiser step a snapshot
    (the weights and the optimiser state the attacks use: Adam's and AdamW's ``exp_avg_sq``, and what the steps
    since the last snapshot added to each weight matrix with Adam's rescaling undone, read after every step at
    first and at growing gaps later) as safetensors, and a manifest (JSON) of the snapshots, the optimiser's class and
    settings, the batch size and, with an Opacus ``PrivacyEngine``, its noise multiplier, sample rate, clipping
    norm and accountant. It hooks the optimiser's step (``register_step_post_hook``), so the loop is unchanged.

    Args:
        model: the network being trained (an Opacus or DataParallel wrapper is fine).
        optimizer: its optimiser (an Opacus ``DPOptimizer`` is read through to the optimiser it wraps).
        folder: where the record goes (created; it must not hold another record).
        every: a snapshot after every ``every`` optimiser steps (and one when the recorder closes).
        batch_size: the batch size, recorded for the reader.
        privacy_engine: the Opacus ``PrivacyEngine`` that makes the training private, with ``delta``.
        delta: the delta its epsilon is stated at.

    Example:
        >>> recorder = TrainingRecorder(model, optimizer, "record", every=10)  # doctest: +SKIP
        >>> ...  # the training loop, unchanged
        >>> result = recorder.audit(train=(x, y), nonmembers=held_out)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        folder: str | Path,
        *,
        every: int = 500,
        batch_size: int | None = None,
        privacy_engine=None,
        delta: float | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every: expected a positive number of optimiser steps, got {every!r}")
        if (privacy_engine is None) != (delta is None):
            raise ConfigError("privacy_engine and delta: give both (the delta the engine's epsilon is stated at)")
        self.folder = ensure_writable(folder, "training record")
        if (self.folder / MANIFEST_FILE).exists():
            raise ConfigError(f"{self.folder}: already holds a training record; record into an empty folder")
        self.model, self.every, self.batch_size = model, every, batch_size
        self.optimizer = getattr(optimizer, "original_optimizer", optimizer)  # Opacus's DPOptimizer wraps one
        self.privacy_engine, self.delta = privacy_engine, delta
        self.parameters = _named_parameters(model, self.optimizer)
        self.step, self.snapshots, self.closed = 0, [], False
        self.read_at, self.next_read = 0, 1  # the optimiser's rescaling, read on a geometric schedule
        self.adaptive = type(self.optimizer).__name__ in ADAPTIVE
        matrices = [(name, p) for name, p in self.parameters if p.ndim == 2] if self.adaptive else []
        self.previous = {name: p.detach().clone() for name, p in matrices}
        self.updates = {name: torch.zeros_like(weight) for name, weight in self.previous.items()}
        self.groups = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        _save(self.folder / INITIAL_FILE, {name: p for name, p in self.parameters})
        self._write_manifest()
        self._hook = self.optimizer.register_step_post_hook(self._after_step)
        print(f"auditkit recorder: {self.describe()}", file=sys.stderr)

    def describe(self) -> str:
        """What the record costs on disk: one snapshot's size and how often it is taken."""
        size = sum(p.numel() * p.element_size() for _, p in self.parameters)
        copies = 3 if self.adaptive else 1  # the weights; for Adam and AdamW their v and the rescaled update too
        return (
            f"a snapshot every {self.every} optimiser steps into {self.folder}, {copies * size / 2**20:.1f} MB each "
            f"({copies * size / self.every / 2**20:.2f} MB per step of training)"
        )

    def close(self) -> TrainingRecord:
        """Stop recording: a last snapshot (unless the last step was just kept) and the final manifest.

        Returns:
            The record, read back and checked as the audit will read it.
        """
        if not self.closed:
            self._hook.remove()
            if self.step and (not self.snapshots or self.snapshots[-1]["step"] != self.step):
                self._snapshot()
            self.closed = True
            self._write_manifest()
        return TrainingRecord.load(self.folder, self.model)

    def audit(self, data=None, **inputs):
        """Close the record and audit the model with it: :meth:`auditkit.Auditor.audit`'s arguments, with
        ``record`` given (the initial weights, the optimiser's rescaling undone, the DP settings); ``attack``,
        ``device``, ``seed`` choose the :class:`auditkit.Auditor`. The attack defaults to the one the record
        serves best: the span attack for Adam and AdamW (their rescaling undone), the owner's for the others.

        Returns:
            The :class:`auditkit.AuditResult`.
        """
        from auditkit.attacks.registry import build_attack
        from auditkit.auditing.auditor import Auditor

        record = self.close()
        settings = {key: inputs.pop(key) for key in ("device", "dtype", "seed") if key in inputs}
        attack = inputs.pop("attack", None) or build_attack({"name": "span" if record.adaptive else "owner"})
        return Auditor(attack, **settings).audit(self.model, data, record=record, **inputs)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.step += 1
        if self.adaptive and self.step >= self.next_read:
            self._read()
        if self.step % self.every == 0:
            self._snapshot()

    @torch.no_grad()
    def _read(self) -> None:
        """Add what the steps since the last read changed in each weight matrix, times ``sqrt(v_hat) + eps``
        now (AdamW: its decoupled decay added back): Adam's rescaling undone. Read after every step at first,
        when ``v`` changes fastest, then at gaps growing by ``READ_GROWTH`` up to ``every``; in the weights'
        own precision, in place."""
        steps, decoupled = self.step - self.read_at, type(self.optimizer).__name__ == "AdamW"
        for name, parameter in self.parameters:
            state = self.optimizer.state.get(parameter, {})
            if name not in self.updates or "exp_avg_sq" not in state:
                continue
            group = self.groups[id(parameter)]
            previous = self.previous[name]
            change = parameter.detach() - previous
            if decoupled:
                change.add_(previous, alpha=group["lr"] * group["weight_decay"] * steps)
            root = math.sqrt(1 - group["betas"][1] ** float(state["step"]))  # sqrt(v_hat) + eps, one pass less:
            scale = state["exp_avg_sq"].sqrt().add_(group["eps"] * root)  # (sqrt(v) + eps root) / root
            self.updates[name].addcmul_(change, scale, value=1 / root)
            previous.copy_(parameter.detach())
        self.read_at = self.step
        self.next_read = self.step + min(self.every, max(1, int(self.step * (READ_GROWTH - 1))))

    def _snapshot(self) -> None:
        """The weights, the kept optimiser state and (Adam, AdamW) the rescaled update since the last snapshot,
        as one safetensors file, listed in the manifest."""
        if self.adaptive and self.read_at != self.step:
            self._read()
        tensors = {f"weight/{name}": p for name, p in self.parameters}
        tensors |= {f"update/{name}": update for name, update in self.updates.items()}
        for name, parameter in self.parameters:
            for key, value in self.optimizer.state.get(parameter, {}).items():
                if key in KEPT_STATE and isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                    tensors[f"{key}/{name}"] = value
        path = self.folder / f"step_{self.step:09d}.safetensors"
        digest = _save(path, tensors)
        for update in self.updates.values():
            update.zero_()
        self.snapshots.append({"step": self.step, "file": path.name, "sha256": digest})
        self._write_manifest()

    def _write_manifest(self) -> None:
        groups = self.optimizer.param_groups
        settings = {key: value for key, value in groups[0].items() if key != "params" and _plain(value)}
        write_json(
            self.folder / MANIFEST_FILE,
            {
                "format": RECORD_FORMAT,
                "optimizer": {"class": type(self.optimizer).__name__, "settings": settings, "groups": len(groups)},
                "parameters": [name for name, _ in self.parameters],
                "every": self.every,
                "batch_size": self.batch_size,
                "steps": self.step,
                "closed": self.closed,
                "snapshots": self.snapshots,
                "privacy": self._privacy() if self.closed else None,
            },
        )

    def _privacy(self) -> dict | None:
        """The Opacus engine's mechanism as its accountant saw it, for the accountant and the ceiling."""
        if self.privacy_engine is None:
            return None
        history = self.privacy_engine.accountant.history
        if not history:
            return None
        mechanisms = {(float(sigma), float(rate)) for sigma, rate, _ in history}
        if len(mechanisms) > 1:
            raise ConfigError("privacy_engine: its accountant ran several noise multipliers or sample rates")
        (sigma, rate), steps = mechanisms.pop(), sum(int(entry[2]) for entry in history)
        clip = getattr(self.privacy_engine, "max_grad_norm", None)
        return {
            "noise_multiplier": sigma,
            "sample_rate": rate,
            "steps": steps,
            "delta": self.delta,
            "accountant": self.privacy_engine.accountant.mechanism(),
            **({"max_grad_norm": float(clip)} if isinstance(clip, int | float) else {}),
        }


def _named_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
    """Every parameter the optimiser updates with its name in the model, wrapper prefixes dropped."""
    named = {id(p): unwrapped_name(name) for name, p in model.named_parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if any(id(p) not in named for p in held):
        raise ConfigError("optimizer: it updates parameters that are not the model's; give the model it trains")
    return [(named[id(p)], p) for p in held]


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``tensors`` as one safetensors file (atomically) and return its SHA-256, hashed as written."""
    from safetensors.torch import save

    content = save({name: t.detach().to("cpu").contiguous() for name, t in tensors.items()})
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def _plain(value) -> bool:
    return isinstance(value, bool | int | float | str | type(None)) or (
        isinstance(value, tuple | list) and all(isinstance(item, int | float) for item in value)
    )
