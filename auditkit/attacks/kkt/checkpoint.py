"""The KKT attack's search as it stands between two steps, and its checkpoint: what an interrupted search
continues from, bit for bit (the same candidates, multipliers, optimiser moments and bookkeeping as a search
that was never stopped, on the same device and thread count).

A checkpoint is one safetensors file (tensors only, read without unpickling) with the search's key and its
scalar bookkeeping as JSON metadata; it is written atomically at most every ``every_s`` seconds and when the
search ends, and read back only when its key matches (same settings, seed, victim and public inputs).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from auditkit.attacks.kkt.config import DIVERGED, KKTConfig
from auditkit.attacks.kkt.optimizer import BatchedOptimizer, restart_mask, take_restarts
from auditkit.storage.files import atomic_path

CHECKPOINT_SECONDS = 60.0  # how often a running search saves its state (and once more when it ends)


@dataclass
class SearchState:
    """Everything the search's loop changes: where the restarts are, how they move, which are left, and what
    has been logged. ``step`` is the next step to run (past ``steps`` once the search has ended)."""

    step: int
    x: torch.Tensor  # (R, m, d) candidates, a leaf
    lam: torch.Tensor  # their multipliers, a leaf
    optimizer: BatchedOptimizer
    hyper: dict[str, torch.Tensor]  # each remaining restart's settings, (R,) each
    alive: torch.Tensor  # original restart index of each batch position (CPU)
    active: torch.Tensor  # not diverged
    losses: torch.Tensor  # the latest step's losses
    initial: torch.Tensor | None  # the losses at step 0: what divergence is measured against
    diverged: list[dict]
    early_stopped: list[int]
    history: list[np.ndarray]
    steps_logged: list[int]
    final_loss: np.ndarray
    residual: np.ndarray

    def narrow(self, keep: torch.Tensor) -> None:
        """Keep the restarts at batch positions ``keep``; the others are stopped for good (early stopping)."""
        self.early_stopped += [int(r) for r in self.alive[~restart_mask(keep, len(self.alive))]]
        self.x, self.lam = take_restarts(self.x, keep), take_restarts(self.lam, keep)
        self.active, self.alive = self.active[keep], self.alive[keep.cpu()]
        self.hyper, self.initial = {k: v[keep] for k, v in self.hyper.items()}, self.initial[keep]
        self.optimizer = self.optimizer.carry([self.x, self.lam], [self.hyper["lr_x"], self.hyper["lr_lambda"]], keep)

    def record(self, step: int, relative: np.ndarray) -> np.ndarray:
        """Log a step and return every restart's loss (NaN: stopped or diverged): restarts that
        diverged (NaN/inf, or finite but grown far beyond where they started) are parked and frozen, each
        restart's loss and ``relative`` residual kept."""
        alive = self.alive.numpy()
        finite = torch.isfinite(self.losses) & torch.isfinite(self.x).all((1, 2))
        finite &= self.losses <= DIVERGED * self.initial
        for position in torch.nonzero(self.active & ~finite).flatten().tolist():
            self.diverged.append({"restart": int(self.alive[position]), "step": step})
            with torch.no_grad():  # park it at a finite point so its NaNs stop costing time
                self.x[position], self.lam[position] = 0.0, 0.0
        self.active &= finite
        logged = np.full(len(self.final_loss), np.nan)  # one per restart the search began with
        logged[alive] = torch.where(self.active, self.losses, torch.nan).cpu().double().numpy()
        self.history.append(logged)
        self.steps_logged.append(step)
        self.final_loss[alive] = logged[alive]
        self.residual[alive] = relative
        return logged

    def refine(self, hyper: dict[str, torch.Tensor]) -> None:
        """Continue in float64: every remaining restart's candidates, multipliers and moments converted,
        ``hyper`` (every restart's settings in float64) narrowed to the restarts left."""
        device = self.x.device
        every = torch.arange(len(self.alive), device=device)
        self.hyper = {key: value[self.alive.to(device)] for key, value in hyper.items()}
        self.x, self.lam = take_restarts(self.x, every, torch.float64), take_restarts(self.lam, every, torch.float64)
        self.optimizer = self.optimizer.carry([self.x, self.lam], [self.hyper["lr_x"], self.hyper["lr_lambda"]], every)


class SearchCheckpoint:
    """One search's checkpoint file: ``folder/pass{index}.safetensors``, valid for ``key`` only.

    Args:
        folder: where it lives (created on the first save).
        index: the search's pass (a deflated attack runs several).
        every_s: the least time between two saves while the search runs (default ``CHECKPOINT_SECONDS``).
    """

    def __init__(self, folder: str | Path, index: int = 0, every_s: float | None = None) -> None:
        self.path = Path(folder) / f"pass{index}.safetensors"
        self.every_s = CHECKPOINT_SECONDS if every_s is None else every_s
        self.key = ""
        self._saved_at = time.monotonic()

    def load(self, cfg: KKTConfig, device: torch.device | str) -> SearchState | None:
        """The state saved under this checkpoint's ``key``; None when there is none, it is another search's,
        or it cannot be read (the search then starts from step 0, as if never run)."""
        from safetensors import SafetensorError, safe_open

        if not self.path.is_file():
            return None
        try:
            with safe_open(self.path, framework="pt", device=str(device)) as opened:
                meta = json.loads((opened.metadata() or {}).get("state", "{}"))
                if meta.get("key") != self.key:
                    return None
                tensors = {name: opened.get_tensor(name) for name in opened.keys()}
        except (SafetensorError, OSError, ValueError):
            return None
        return _state(tensors, meta, cfg)

    def keep(self, state: SearchState, ended: bool = False) -> None:
        """Save ``state`` when ``every_s`` has passed since the last save, or the search has ``ended``."""
        if not ended and time.monotonic() - self._saved_at < self.every_s:
            return
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tensors, meta = _tensors(state), json.dumps({"key": self.key, **_bookkeeping(state)})
        with atomic_path(self.path) as temporary:
            save_file(
                {name: tensor.detach().clone().contiguous() for name, tensor in tensors.items()},
                temporary,
                {"state": meta},
            )
        self._saved_at = time.monotonic()


def _tensors(state: SearchState) -> dict[str, torch.Tensor]:
    (x1, x2), (l1, l2) = state.optimizer.state
    tensors = {"x": state.x, "lam": state.lam, "x_m1": x1, "x_m2": x2, "lam_m1": l1, "lam_m2": l2}
    tensors |= {f"hyper.{key}": value for key, value in state.hyper.items()}
    tensors |= {"alive": state.alive, "active": state.active, "losses": state.losses}
    tensors |= {"final_loss": torch.from_numpy(state.final_loss), "residual": torch.from_numpy(state.residual)}
    if state.history:
        tensors["history"] = torch.from_numpy(np.stack(state.history))
    if state.initial is not None:
        tensors["initial"] = state.initial
    return tensors


def _bookkeeping(state: SearchState) -> dict:
    return {
        "step": state.step,
        "optimizer_t": state.optimizer.t,
        "diverged": state.diverged,
        "early_stopped": state.early_stopped,
        "steps_logged": state.steps_logged,
    }


def _state(tensors: dict[str, torch.Tensor], meta: dict, cfg: KKTConfig) -> SearchState:
    x, lam = tensors["x"].requires_grad_(True), tensors["lam"].requires_grad_(True)
    hyper = {key.removeprefix("hyper."): value for key, value in tensors.items() if key.startswith("hyper.")}
    optimizer = BatchedOptimizer(cfg, [x, lam], [hyper["lr_x"], hyper["lr_lambda"]])
    optimizer.state = [(tensors["x_m1"], tensors["x_m2"]), (tensors["lam_m1"], tensors["lam_m2"])]
    optimizer.t = int(meta["optimizer_t"])
    history = tensors.get("history")
    return SearchState(
        step=int(meta["step"]),
        x=x,
        lam=lam,
        optimizer=optimizer,
        hyper=hyper,
        alive=tensors["alive"].cpu(),
        active=tensors["active"],
        losses=tensors["losses"],
        initial=tensors.get("initial"),
        diverged=list(meta["diverged"]),
        early_stopped=list(meta["early_stopped"]),
        history=[] if history is None else list(history.cpu().numpy()),
        steps_logged=list(meta["steps_logged"]),
        final_loss=tensors["final_loss"].cpu().numpy().copy(),
        residual=tensors["residual"].cpu().numpy().copy(),
    )


def search_key(
    cfg: KKTConfig, seed: int, device, dtype: torch.dtype, objective, knowledge, start: torch.Tensor, initial
) -> str:
    """What makes a checkpoint this search's: the attack's settings, seed, device type and precision, the
    victim's weights, the valid range and public inputs, and where the restarts start."""
    digest = hashlib.sha256(json.dumps([cfg.model_dump(), seed, torch.device(device).type, str(dtype)]).encode())
    networks = [*objective.points, objective.target, objective.free]
    weights = [weight for network in networks if network is not None for weight in network.parameters]
    arrays = [*weights, knowledge.lower, knowledge.upper, knowledge.reference_inputs, start]
    for array in [*arrays, *(initial or ())]:
        if array is not None:
            digest.update(np.ascontiguousarray(torch.as_tensor(array).detach().cpu().double().numpy()).tobytes())
    return digest.hexdigest()
