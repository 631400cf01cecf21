"""The KKT attack's optimiser: Adam or SGD over restarts batched along the first dimension, each with its own
learning rate, and the restart bookkeeping (taking a subset of restarts, as new leaves) it needs."""

from __future__ import annotations

import math

import torch

from auditkit.attacks.kkt.config import KKTConfig
from auditkit.attacks.kkt.step import restart_chunks


def restart_mask(index: torch.Tensor, size: int) -> torch.Tensor:
    """A boolean mask over ``size`` restarts, True at ``index``."""
    mask = torch.zeros(size, dtype=torch.bool)
    mask[index.cpu()] = True
    return mask


def take_restarts(tensor: torch.Tensor, index: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new leaf holding the restarts at ``index`` (a copy), optionally in another dtype."""
    return tensor.detach()[index].to(dtype or tensor.dtype).requires_grad_(True)


class BatchedOptimizer:
    """Adam or SGD-with-momentum on tensors whose first dimension is the restart; each restart has its
    own learning rate; frozen (diverged) restarts stay put."""

    def __init__(self, cfg: KKTConfig, params: list[torch.Tensor], lrs: list[torch.Tensor]) -> None:
        self.cfg, self.params, self.lrs = cfg, params, lrs
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.t = 0

    def carry(self, params: list[torch.Tensor], lrs: list[torch.Tensor], keep: torch.Tensor) -> BatchedOptimizer:
        """The same optimizer on new parameters: the restarts at ``keep``, in the parameters' dtype (state kept)."""
        carried = BatchedOptimizer(self.cfg, params, lrs)
        carried.state = [(m1[keep].to(p.dtype), m2[keep].to(p.dtype)) for p, (m1, m2) in zip(params, self.state)]
        carried.t = self.t
        return carried

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One step of every restart still ``active`` (the others keep their place), in the CPU's chunks of
        restarts (:func:`auditkit.attacks.kkt.step.restart_chunks`: the update's temporaries stay small)."""
        factor = lr_factor(self.cfg, self.t)
        self.t += 1
        for p, lr, (m1, m2) in zip(self.params, self.lrs, self.state):
            for part in restart_chunks(p, p[0].numel() * p.element_size()):
                self._update(p[part], p.grad[part], _expand(lr[part], p) * factor, active[part], m1[part], m2[part])

    def _update(self, p, grad, lr, active, m1, m2) -> None:
        grad = torch.nan_to_num(grad) * _expand(active, p)
        if self.cfg.optimizer == "adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            m1.mul_(beta1).add_(grad, alpha=1 - beta1)
            m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (m2 / (1 - beta2**self.t)).sqrt_().add_(eps)
            p.sub_(lr / (1 - beta1**self.t) * m1 / denom)
        else:
            m1.mul_(self.cfg.momentum).add_(grad)
            p.sub_(lr * m1)


def lr_factor(cfg: KKTConfig, step: int) -> float:
    """The learning rates' multiplier at optimisation ``step`` (0-based): 1 throughout for a constant schedule."""
    if cfg.lr_schedule == "constant":
        return 1.0
    return cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)
