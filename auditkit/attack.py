"""The KKT reconstruction attack (Haim et al., NeurIPS 2022).

Fixes the victim's weights theta and optimises m candidate inputs x_j with multipliers lambda_j so
that theta = (1/m) sum_j lambda_j y_j grad_theta Phi(x_j) (stationarity of the max-margin problem),
with a pixel-range prior and a lambda_min hinge. R restarts advance together as one batched program.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch

from auditkit.kernel import MLPLayers, preactivation_scale, stationarity_loss


@dataclass
class KKTConfig:
    """Attack hyperparameters. Defaults are the recipe measured to work on CPU victims (attack.md)."""

    steps: int = 5000
    candidates_per_sample: int = 2  # m = candidates_per_sample * n, half per label
    restarts: int = 1
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_x: float = 0.01
    lr_lambda: float = 0.01
    momentum: float = 0.9  # sgd only
    init_scale: float = 0.01  # x0 ~ N(0, init_scale^2)
    lambda_init: Literal["uniform", "ones"] = "uniform"
    lambda_min: float = 0.1
    lambda_weight: float = 5.0
    alpha: float = 15.0
    alpha_relative: bool = True  # alpha / median |pre-activation| of the victim at reference inputs
    prior: Literal["tight", "box"] = "tight"  # tight: valid pixel range per pixel; box: [-1, 1]
    prior_weight: float = 1.0
    log_every: int = 50

    @classmethod
    def from_dict(cls, values: dict) -> KKTConfig:
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttackOutput:
    """Candidates of all finished (non-diverged) restarts, pooled, with per-restart diagnostics."""

    candidates: np.ndarray  # (K, d), in the victim's input space
    lambdas: np.ndarray  # (K,)
    labels: np.ndarray  # (K,) in {-1, +1}
    restart: np.ndarray  # (K,) restart index of each candidate
    loss_history: np.ndarray  # (log points, R) total loss
    history_steps: np.ndarray  # (log points,)
    final_loss: np.ndarray  # (R,)
    relative_residual: np.ndarray  # (R,) sqrt(stationarity) / ||theta||
    diverged: list[dict] = field(default_factory=list)  # [{"restart": r, "step": s}]
    alpha: float = math.nan
    seconds: float = 0.0


class KKTAttack:
    """Reconstruct training inputs of a ReLU MLP from its weights via the KKT conditions."""

    def __init__(self, config: KKTConfig | None = None, **overrides) -> None:
        base = config or KKTConfig()
        self.config = KKTConfig(**{**base.to_dict(), **overrides})

    def run(
        self,
        layers: MLPLayers,
        n_train: int,
        lower: torch.Tensor,
        upper: torch.Tensor,
        reference_inputs: torch.Tensor | None = None,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        progress: Callable[[int, float], None] | None = None,
        initial: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> AttackOutput:
        """Run the attack on a victim's layers.

        lower/upper: the valid input range per input dimension (the attacker knows the pixel range and
        the normalisation). reference_inputs: inputs of the data distribution used to set a relative
        alpha (the victim's pre-activation scale); uniform draws in [lower, upper] when None.
        initial: (x, lambdas, labels) to start every restart from instead of the random init (tests and
        diagnostics, e.g. starting at the true training set).
        """
        cfg = self.config
        start = time.perf_counter()
        layers = layers.to(device, dtype)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        lower = lower.to(device=device, dtype=dtype).flatten()
        upper = upper.to(device=device, dtype=dtype).flatten()
        if cfg.prior == "box":
            lower, upper = torch.full_like(lower, -1.0), torch.full_like(upper, 1.0)
        alpha = self._resolve_alpha(layers, lower, upper, reference_inputs, generator, device, dtype)

        m = max(2, cfg.candidates_per_sample * n_train)
        m += m % 2
        d, restarts = layers.input_dim, cfg.restarts
        labels = torch.cat([torch.ones(m // 2), -torch.ones(m // 2)])
        x = torch.randn(restarts, m, d, generator=generator, dtype=torch.float64) * cfg.init_scale
        if cfg.lambda_init == "uniform":
            lam = torch.rand(restarts, m, generator=generator, dtype=torch.float64)
        else:
            lam = torch.ones(restarts, m, dtype=torch.float64)
        if initial is not None:
            x, lam, labels = (t.detach().cpu().double() for t in initial)
            m = len(labels)
            x, lam = x.expand(restarts, m, d).clone(), lam.expand(restarts, m).clone()
        labels = labels.to(device=device, dtype=dtype)
        x = x.to(device=device, dtype=dtype).requires_grad_(True)
        lam = lam.to(device=device, dtype=dtype).requires_grad_(True)
        optimizer = _BatchedOptimizer(cfg, [x, lam], [cfg.lr_x, cfg.lr_lambda])
        active = torch.ones(restarts, dtype=torch.bool, device=device)
        diverged: list[dict] = []
        history, steps_logged = [], []
        theta_norm = layers.norm().item()
        losses = stationarity = None

        for step in range(cfg.steps + 1):
            stationarity = stationarity_loss(layers, x, lam, labels, alpha)
            prior = (torch.relu(x - upper).pow(2) + torch.relu(lower - x).pow(2)).sum((1, 2))
            hinge = torch.relu(cfg.lambda_min - lam).pow(2).sum(1)
            losses = stationarity + cfg.prior_weight * prior + cfg.lambda_weight * hinge
            if step % cfg.log_every == 0 or step == cfg.steps:
                finite = torch.isfinite(losses) & torch.isfinite(x).all((1, 2))
                for r in torch.nonzero(active & ~finite).flatten().tolist():
                    diverged.append({"restart": r, "step": step})
                    with torch.no_grad():  # park it at a finite point so its NaNs stop costing time
                        x[r], lam[r] = 0.0, 0.0
                active &= finite
                logged = torch.where(active, losses.detach(), torch.full_like(losses, math.nan))
                history.append(logged.cpu().numpy())
                steps_logged.append(step)
                if progress is not None:
                    live = logged[active]
                    progress(step, live.min().item() if len(live) else math.nan)
                if not bool(active.any()):
                    break
            if step == cfg.steps:
                break
            total = torch.where(active, losses, torch.zeros_like(losses)).sum()
            optimizer.zero_grad()
            total.backward()
            optimizer.step(active)

        keep = active.cpu()
        kept_index = torch.nonzero(keep).flatten()
        candidates = x.detach()[keep].cpu().double().reshape(-1, d).numpy()
        return AttackOutput(
            candidates=candidates,
            lambdas=lam.detach()[keep].cpu().double().flatten().numpy(),
            labels=labels.cpu().repeat(len(kept_index)).double().numpy(),
            restart=kept_index.repeat_interleave(m).numpy(),
            loss_history=np.array(history),
            history_steps=np.array(steps_logged),
            final_loss=losses.detach().cpu().double().numpy(),
            relative_residual=(stationarity.detach().cpu().double().sqrt() / theta_norm).numpy(),
            diverged=diverged,
            alpha=float(alpha),
            seconds=time.perf_counter() - start,
        )

    def _resolve_alpha(self, layers, lower, upper, reference_inputs, generator, device, dtype) -> float:
        cfg = self.config
        if not cfg.alpha_relative:
            return cfg.alpha
        if reference_inputs is None:
            u = torch.rand(256, len(lower), generator=generator, dtype=torch.float64)
            reference_inputs = lower.cpu().double() + u * (upper - lower).cpu().double()
        scale = preactivation_scale(layers, reference_inputs.to(device=device, dtype=dtype))
        if not scale > 0:
            raise ValueError("the victim's hidden pre-activations are all zero: relative alpha is undefined")
        return cfg.alpha / scale


class _BatchedOptimizer:
    """Adam or SGD-with-momentum on tensors whose first dimension is the restart; frozen restarts stay put."""

    def __init__(self, cfg: KKTConfig, params: list[torch.Tensor], lrs: list[float]) -> None:
        self.cfg, self.params, self.lrs = cfg, params, lrs
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for p, lr, (m1, m2) in zip(self.params, self.lrs, self.state):
            grad = torch.nan_to_num(p.grad) * _expand(active, p)
            if self.cfg.optimizer == "adam":
                m1.mul_(beta1).add_(grad, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1**self.t)
                denom = (m2 / (1 - beta2**self.t)).sqrt_().add_(eps)
                p.addcdiv_(m1, denom, value=-step_size)
            else:
                m1.mul_(self.cfg.momentum).add_(grad)
                p.add_(m1, alpha=-lr)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)
