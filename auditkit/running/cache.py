"""The victim cache: trained weights and their training log, keyed by everything that determines them.

Entries live under ``$AUDITKIT_CACHE/victims`` (default ``~/.cache/auditkit``), are written atomically
and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from auditkit.config.schema import DefenseConfig, Scenario
from auditkit.results.facts import TrainingLog
from auditkit.storage.files import atomic_path, cache_folder, ensure_writable, remove_temporaries, write_json
from auditkit.storage.fingerprint import fingerprint
from auditkit.storage.safe_load import load_weights, read_json_object
from auditkit.victims.models import unwrap

CACHE_VERSION = 2  # 2: typed training log (recipe, privacy), weights checksum


def cache_root() -> Path:
    """Where victims are cached: ``$AUDITKIT_CACHE/victims``, by default ``~/.cache/auditkit/victims``."""
    return cache_folder("victims")


def victim_key(scenario: Scenario, defense: DefenseConfig, device: torch.device) -> str:
    """Hash of everything that determines the trained weights: seed, precision, device type, data,
    the victim's architecture and training recipe, and the defense (its name and description aside)."""
    content = {
        "version": CACHE_VERSION,
        "seed": scenario.seed,
        "dtype": scenario.dtype,
        "device": device.type,
        "data": scenario.data.model_dump(),
        "victim": scenario.victim.model_dump(),
        "defense": defense.model_dump(exclude={"name", "description"}),
    }
    return fingerprint(content)


# what reading a damaged entry raises: unreadable files (ValueError from the safe readers), wrong fields or tensors
DAMAGED = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class VictimCache:
    """Load or store one trained victim by key. An entry whose checksum, tensors or log do not check out
    is reported in ``rejected`` and treated as absent (the victim is trained again and the entry replaced)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = ensure_writable(root or cache_root(), "victim cache (set AUDITKIT_CACHE to move it)")
        remove_temporaries(self.root)  # left by killed runs; a live run's are kept
        self.rejected: list[str] = []

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.pt", self.root / f"{key}.json"

    def load(self, key: str, model: nn.Module) -> TrainingLog | None:
        """Fill ``model`` with the cached weights and return their training log; None when not cached."""
        weights_path, log_path = self._paths(key)
        if not (weights_path.is_file() and log_path.is_file()):
            return None
        try:
            entry = read_json_object(log_path, ValueError)
            if entry["weights_sha256"] != _sha256(weights_path):
                raise ValueError("checksum mismatch")
            state = load_weights(weights_path, ValueError)
            if not all(torch.isfinite(tensor).all() for tensor in state.values()):
                raise ValueError("non-finite weights")
            model.load_state_dict(state)
            return TrainingLog.from_dict(entry["log"])
        except DAMAGED as error:
            self.rejected.append(f"cache entry {weights_path.name} is damaged ({error}); training the victim again")
            return None

    def store(self, key: str, model: nn.Module, log: TrainingLog) -> None:
        """Write ``model``'s weights, then their checksum and training log (each file atomically)."""
        weights_path, log_path = self._paths(key)
        with atomic_path(weights_path) as temporary:
            torch.save({k: v.cpu() for k, v in unwrap(model).state_dict().items()}, temporary)
        write_json(log_path, {"weights_sha256": _sha256(weights_path), "log": log.to_dict()})
