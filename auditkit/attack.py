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

from auditkit.kernel import MLPLayers, kkt_residual, preactivation_scale, stationarity_loss

SEARCH_RANGES = {
    "init_scale": (1e-3, 0.05),
    "lr_x": (3e-3, 3e-2),
    "lambda_min": (0.01, 0.5),
    "alpha": (10.0, 100.0),
}
LOG_UNIFORM = ("init_scale", "lr_x")
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SelectRule = Literal["kkt_residual", "kkt_loss", "ground_truth"]


@dataclass
class KKTConfig:
    """Attack hyperparameters. Defaults: the built-in sweep around the recipe measured on CPU victims.

    search "random": restart 0 keeps the configured init_scale, lr_x, lambda_min and alpha (the
    measured recipe); every other restart draws its own from ``search_ranges`` (log-uniform for
    init_scale and lr_x), and all restarts advance as one batched program. At ``early_stop_step`` the
    best ``early_stop_keep`` fraction (by the ``select`` rule) goes on; at the end the ``select_top``
    best are pooled (0: every survivor). ``select``: "kkt_residual" (what an outside attacker has: how
    much of theta each restart's candidates explain, lambdas refitted, exact ReLU, so restarts with
    different alpha and lambda_min compare fairly), "kkt_loss" (the raw attack loss, comparable only
    between restarts that share their settings) or "ground_truth" (the auditor knows the training set).
    """

    steps: int = 8000
    candidates_per_sample: int = 2  # m = candidates_per_sample * n, half per label
    restarts: int = 4
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_x: float = 0.01
    lr_lambda: float = 0.01
    momentum: float = 0.9  # sgd only
    init_scale: float = 0.01  # x0 ~ N(0, init_scale^2)
    lambda_init: Literal["uniform", "ones"] = "uniform"
    lambda_min: float = 0.1
    lambda_weight: float = 5.0
    alpha: float = 40.0
    alpha_relative: bool = True  # alpha / median |pre-activation| of the victim at reference inputs
    prior: Literal["tight", "box"] = "tight"  # tight: valid pixel range per pixel; box: [-1, 1]
    prior_weight: float = 1.0
    log_every: int = 50
    search: Literal["off", "random"] = "random"
    search_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(SEARCH_RANGES))
    early_stop_step: int = 0
    early_stop_keep: float = 0.5
    select: SelectRule = "kkt_residual"
    select_top: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> KKTConfig:
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttackOutput:
    """Candidates of the selected restarts, pooled, with per-restart settings and diagnostics."""

    candidates: np.ndarray  # (K, d), in the victim's input space
    lambdas: np.ndarray  # (K,)
    labels: np.ndarray  # (K,) in {-1, +1}
    restart: np.ndarray  # (K,) restart index of each candidate
    loss_history: np.ndarray  # (log points, R) total loss, NaN once a restart stopped
    history_steps: np.ndarray  # (log points,)
    final_loss: np.ndarray  # (R,)
    relative_residual: np.ndarray  # (R,) sqrt(stationarity) / ||theta||
    settings: dict[str, list[float]] = field(default_factory=dict)  # per-restart hyperparameters
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (R,) by the selection rule
    selected: list[int] = field(default_factory=list)
    early_stopped: list[int] = field(default_factory=list)
    diverged: list[dict] = field(default_factory=list)  # [{"restart": r, "step": s}]
    alpha: float = math.nan  # the scale alpha is relative to (1 when absolute)
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
        scorer: Scorer | None = None,
    ) -> AttackOutput:
        """Run the attack on a victim's layers.

        lower/upper: the valid input range per input dimension (the attacker knows the pixel range and
        the normalisation). reference_inputs: inputs of the data distribution used to set a relative
        alpha (the victim's pre-activation scale); uniform draws in [lower, upper] when None.
        initial: (x, lambdas, labels) to start every restart from instead of the random init (tests and
        diagnostics, e.g. starting at the true training set).
        scorer: (candidates (R, m, d), losses (R,)) -> scores (R,), higher is better, for early stopping
        and selection; by the config's ``select`` rule when None. The Auditor passes the ground-truth scorer.
        """
        cfg = self.config
        start = time.perf_counter()
        layers = layers.to(device, dtype)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        lower = lower.to(device=device, dtype=dtype).flatten()
        upper = upper.to(device=device, dtype=dtype).flatten()
        if cfg.prior == "box":
            lower, upper = torch.full_like(lower, -1.0), torch.full_like(upper, 1.0)
        scale = self._alpha_scale(layers, lower, upper, reference_inputs, generator, device, dtype)
        settings = self._restart_settings(generator)
        hyper = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in settings.items()}

        m = max(2, cfg.candidates_per_sample * n_train)
        m += m % 2
        d, restarts = layers.input_dim, cfg.restarts
        labels = torch.cat([torch.ones(m // 2), -torch.ones(m // 2)])
        x = torch.randn(restarts, m, d, generator=generator, dtype=torch.float64)
        x *= torch.tensor(settings["init_scale"], dtype=torch.float64)[:, None, None]
        if cfg.lambda_init == "uniform":
            lam = torch.rand(restarts, m, generator=generator, dtype=torch.float64)
        else:
            lam = torch.ones(restarts, m, dtype=torch.float64)
        if initial is not None:
            x, lam, labels = (t.detach().cpu().double() for t in initial)
            m = len(labels)
            x, lam = x.expand(restarts, m, d).clone(), lam.expand(restarts, m).clone()
        labels = labels.to(device=device, dtype=dtype)
        if scorer is None:
            scorer = residual_scorer(layers, labels, lower, upper) if cfg.select == "kkt_residual" else _kkt_loss_score
        x = x.to(device=device, dtype=dtype).requires_grad_(True)
        lam = lam.to(device=device, dtype=dtype).requires_grad_(True)
        lr_lambda = torch.full((restarts,), cfg.lr_lambda, dtype=dtype, device=device)
        optimizer = _BatchedOptimizer(cfg, [x, lam], [hyper["lr_x"], lr_lambda])
        alive = torch.arange(restarts)  # original restart index of each batch position
        active = torch.ones(restarts, dtype=torch.bool, device=device)
        diverged: list[dict] = []
        early_stopped: list[int] = []
        history, steps_logged = [], []
        final_loss = np.full(restarts, np.nan)
        residual = np.full(restarts, np.nan)
        theta_norm = layers.norm().item()
        losses = torch.zeros(restarts, dtype=dtype, device=device)

        for step in range(cfg.steps + 1):
            if 0 < step == cfg.early_stop_step < cfg.steps and len(alive) > 1:
                # score with the latest losses (one step old) and the current candidates
                keep = self._best(scorer(x.detach(), losses.detach()), active, cfg.early_stop_keep)
                early_stopped += [int(r) for r in alive[~_mask(keep, len(alive))]]
                x, lam, active, alive = _take(x, keep), _take(lam, keep), active[keep], alive[keep.cpu()]
                hyper = {k: v[keep] for k, v in hyper.items()}
                lr_lambda = lr_lambda[keep]
                optimizer = optimizer.narrow([x, lam], [hyper["lr_x"], lr_lambda], keep)
            alpha = hyper["alpha"] / scale
            stationarity = stationarity_loss(layers, x, lam, labels, alpha)
            prior = (torch.relu(x - upper).pow(2) + torch.relu(lower - x).pow(2)).sum((1, 2))
            hinge = torch.relu(hyper["lambda_min"][:, None] - lam).pow(2).sum(1)
            losses = stationarity + cfg.prior_weight * prior + cfg.lambda_weight * hinge
            if step % cfg.log_every == 0 or step in (cfg.steps, cfg.early_stop_step - 1):
                finite = torch.isfinite(losses) & torch.isfinite(x).all((1, 2))
                for position in torch.nonzero(active & ~finite).flatten().tolist():
                    diverged.append({"restart": int(alive[position]), "step": step})
                    with torch.no_grad():  # park it at a finite point so its NaNs stop costing time
                        x[position], lam[position] = 0.0, 0.0
                active &= finite
                logged = np.full(restarts, np.nan)
                logged[alive.numpy()] = torch.where(active, losses.detach(), torch.nan).cpu().double().numpy()
                history.append(logged)
                steps_logged.append(step)
                final_loss[alive.numpy()] = logged[alive.numpy()]
                residual[alive.numpy()] = (stationarity.detach().cpu().double().sqrt() / theta_norm).numpy()
                if progress is not None:
                    progress(step, float(np.nanmin(logged)) if np.isfinite(logged).any() else math.nan)
                if not bool(active.any()):
                    break
            if step == cfg.steps:
                break
            total = torch.where(active, losses, torch.zeros_like(losses)).sum()
            optimizer.zero_grad()
            total.backward()
            optimizer.step(active)

        scores = np.full(restarts, np.nan)
        with torch.no_grad():
            current = scorer(x.detach(), losses.detach())
        scores[alive.numpy()] = torch.where(active, current, -torch.inf).cpu().double().numpy()
        top = cfg.select_top if cfg.select_top > 0 else len(alive)
        chosen = self._best(current, active, top / len(alive))
        chosen = chosen[active[chosen]]  # diverged restarts are never pooled
        kept = chosen.cpu()
        candidates = x.detach()[chosen].cpu().double().reshape(-1, d).numpy()
        return AttackOutput(
            candidates=candidates,
            lambdas=lam.detach()[chosen].cpu().double().flatten().numpy(),
            labels=labels.cpu().repeat(len(kept)).double().numpy(),
            restart=alive[kept].repeat_interleave(m).numpy(),
            loss_history=np.array(history),
            history_steps=np.array(steps_logged),
            final_loss=final_loss,
            relative_residual=residual,
            settings=settings,
            scores=scores,
            selected=sorted(int(r) for r in alive[kept]),
            early_stopped=early_stopped,
            diverged=diverged,
            alpha=float(scale),
            seconds=time.perf_counter() - start,
        )

    def _restart_settings(self, generator: torch.Generator) -> dict[str, list[float]]:
        """Per-restart (init_scale, lr_x, lambda_min, alpha): the config's, then random draws when searching."""
        cfg, restarts = self.config, self.config.restarts
        settings = {k: [float(getattr(cfg, k))] for k in SEARCH_RANGES}
        drawn = restarts - 1 if cfg.search == "random" else 0
        for key, values in settings.items():
            low, high = cfg.search_ranges.get(key, SEARCH_RANGES[key])
            u = torch.rand(drawn, generator=generator, dtype=torch.float64)
            if key in LOG_UNIFORM:
                values += torch.exp(math.log(low) + u * (math.log(high) - math.log(low))).tolist()
            else:
                values += (low + u * (high - low)).tolist()
            values += values[:1] * (restarts - len(values))
        return settings

    @staticmethod
    def _best(scores: torch.Tensor, active: torch.Tensor, fraction: float) -> torch.Tensor:
        """Batch positions of the best ceil(fraction * R) restarts (diverged ones last)."""
        ranked = torch.where(active, scores, -torch.inf)
        count = max(1, math.ceil(fraction * len(scores) - 1e-9))
        return torch.argsort(ranked, descending=True, stable=True)[:count].sort().values

    def _alpha_scale(self, layers, lower, upper, reference_inputs, generator, device, dtype) -> float:
        """What alpha is relative to: the victim's median |pre-activation| (1 for an absolute alpha)."""
        if not self.config.alpha_relative:
            return 1.0
        if reference_inputs is None:
            u = torch.rand(256, len(lower), generator=generator, dtype=torch.float64)
            reference_inputs = lower.cpu().double() + u * (upper - lower).cpu().double()
        scale = preactivation_scale(layers, reference_inputs.to(device=device, dtype=dtype))
        if not scale > 0:
            raise ValueError("the victim's hidden pre-activations are all zero: relative alpha is undefined")
        return scale


def _kkt_loss_score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    return -losses


def residual_scorer(layers: MLPLayers, labels: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> Scorer:
    """Scores (R,) for candidates (R, m, d): minus the victim's KKT residual each restart's candidates
    leave (clamped to the valid range, multipliers refitted, exact ReLU): the ``kkt_residual`` rule."""

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        residuals = [kkt_residual(layers, c.clamp(lower, upper), labels)[0] for c in candidates]
        return torch.tensor(residuals, dtype=losses.dtype, device=losses.device).nan_to_num(nan=torch.inf).neg()

    return score


def _mask(index: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[index.cpu()] = True
    return mask


def _take(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return tensor.detach()[index].clone().requires_grad_(True)


class _BatchedOptimizer:
    """Adam or SGD-with-momentum on tensors whose first dimension is the restart; each restart has its
    own learning rate; frozen (diverged) restarts stay put."""

    def __init__(self, cfg: KKTConfig, params: list[torch.Tensor], lrs: list[torch.Tensor]) -> None:
        self.cfg, self.params, self.lrs = cfg, params, lrs
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.t = 0

    def narrow(self, params: list[torch.Tensor], lrs: list[torch.Tensor], keep: torch.Tensor) -> _BatchedOptimizer:
        """The same optimizer for a subset of restarts (state carried over)."""
        narrowed = _BatchedOptimizer(self.cfg, params, lrs)
        narrowed.state = [(m1[keep].clone(), m2[keep].clone()) for m1, m2 in self.state]
        narrowed.t = self.t
        return narrowed

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for p, lr, (m1, m2) in zip(self.params, self.lrs, self.state):
            grad = torch.nan_to_num(p.grad) * _expand(active, p)
            lr = _expand(lr, p)
            if self.cfg.optimizer == "adam":
                m1.mul_(beta1).add_(grad, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (m2 / (1 - beta2**self.t)).sqrt_().add_(eps)
                p.sub_(lr / (1 - beta1**self.t) * m1 / denom)
            else:
                m1.mul_(self.cfg.momentum).add_(grad)
                p.sub_(lr * m1)


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)
