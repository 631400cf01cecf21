"""The KKT reconstruction attack (Haim et al., NeurIPS 2022) and its one validated configuration.

Fixes the victim's weights theta and optimises m candidate inputs x_j with multipliers lambda_j so
that theta = (1/m) sum_j lambda_j y_j grad_theta Phi(x_j) (stationarity of the max-margin problem),
with a pixel-range prior and a lambda_min hinge. A C-output victim gets the multiclass version
(Buzaglo et al., NeurIPS 2023): each candidate carries a class y_j and one multiplier per other class k,
on the gradient of its margin Phi_{y_j} - Phi_k at x_j (or, ``multiclass_margins: runner_up``, one
multiplier on the margin against max_{k != y_j} Phi_k; see :func:`auditkit.kernel.margin_coefficients`).
R restarts advance together as one batched program.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError, field_validator

from auditkit.attack import AttackerKnowledge, AttackOutput, ProgressCallback
from auditkit.environment import DEFAULT_DTYPE, resolve_dtype
from auditkit.errors import STRICT, ConfigError, first_error
from auditkit.kernel import (
    MLPLayers,
    UnsupportedModelError,
    candidate_lambdas,
    forward,
    kkt_residual,
    preactivation_scale,
    stationarity_loss,
)
from auditkit.metrics import standardize
from auditkit.results import AttackFacts

SEARCH_RANGES = {
    "init_scale": [1e-3, 0.05],
    "lr_x": [3e-3, 3e-2],
    "lambda_min": [0.01, 0.5],
    "alpha": [10.0, 100.0],
}
Range = Annotated[list[float], Field(min_length=2, max_length=2)]
LOG_UNIFORM = ("init_scale", "lr_x")
DIVERGED = 1e6  # a restart whose loss grows past this multiple of its starting loss has diverged
SELECTION_RULES = {
    "kkt_residual": "restarts ranked by how much of the weights their candidates explain (KKT residual, "
    "multipliers refitted, exact ReLU): what an outside attacker has",
    "kkt_loss": "restarts ranked by their attack loss (what an outside attacker has; fair only between "
    "restarts with the same settings)",
    "ground_truth": "restarts ranked by how close their candidates come to the training set (mean NCC "
    "distance of the 10 best matches, as the authors' sweeps did): the auditor's view, not an outsider's",
}
SelectRule = Literal[tuple(SELECTION_RULES)]
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (candidates (R, m, d), losses (R,)) -> (R,)


class KKTConfig(BaseModel):
    """Attack hyperparameters, for YAML presets and the Python API alike.

    Defaults: the built-in sweep around the recipe measured on CPU victims. search "random": restart 0
    keeps the configured init_scale, lr_x, lambda_min and alpha (the measured recipe); every other
    restart draws its own from ``search_ranges`` (log-uniform for init_scale and lr_x), and all
    restarts advance as one batched program. At ``early_stop_step`` the best ``early_stop_keep``
    fraction (by the ``select`` rule) goes on; at the end the ``select_top`` best are pooled.
    """

    model_config = STRICT | {"frozen": True}

    steps: int = Field(8000, ge=0, le=100_000_000, description="optimisation steps per restart")
    candidates_per_sample: int = Field(
        2, gt=0, le=1000, description="m = candidates_per_sample * n, split evenly over the classes"
    )
    restarts: int = Field(4, gt=0, le=1024, description="restarts advanced together as one batched program")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_x: float = Field(0.01, gt=0)
    lr_lambda: float = Field(0.01, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="constant; or cosine: both learning rates decay from their value to lr_final of it over the steps",
    )
    lr_final: float = Field(0.05, gt=0, le=1, description="cosine only: the last step's fraction of the learning rates")
    refine_steps: int = Field(
        0,
        ge=0,
        le=100_000_000,
        description="the last refine_steps steps run in float64 (victim weights, candidates, multipliers and "
        "optimiser state promoted); 0 = none; nothing changes when the attack already runs in float64",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    init_scale: float = Field(0.01, gt=0, description="x0 ~ N(0, init_scale^2) (init public: added to the image)")
    init: Literal["random", "public"] = Field(
        "random",
        description="random: candidates start near 0; public: each starts at a public (non-member) image the victim "
        "assigns to the candidate's class (the auditor draws them from the identification pool, so a candidate that "
        "never moves identifies a non-member, never a member)",
    )
    lambda_init: Literal["uniform", "ones"] = "uniform"
    multiclass_margins: Literal["all", "runner_up"] = Field(
        "all",
        description="C outputs: all, one multiplier per other class (every constraint of the multiclass "
        "max-margin problem: 43 against 8 of 50 identified on mnist10_quick at n = 50); runner_up, one per "
        "candidate on the margin against its runner-up class",
    )
    lambda_sign: Literal["positive", "free"] = Field(
        "positive",
        description="positive: lambda >= 0 kept by the lambda_min hinge (a max-margin KKT point); free: signed "
        "multipliers, no hinge, initialised N(0, 1) (Buzaglo et al. 2023's general-loss variant)",
    )
    lambda_min: float = Field(0.1, ge=0, description="multipliers below it are pushed up by the hinge")
    lambda_weight: float = Field(5.0, ge=0)
    alpha: float = Field(40.0, gt=0, description="sharpness of the smoothed ReLU derivative sigmoid(alpha z)")
    alpha_relative: bool = Field(True, description="alpha / median |pre-activation| of the victim")
    prior: Literal["tight", "box"] = Field("tight", description="tight: valid pixel range per pixel; box: [-1, 1]")
    prior_weight: float = Field(1.0, ge=0)
    log_every: int = Field(50, gt=0)
    search: Literal["off", "random"] = "random"
    search_ranges: dict[Literal["init_scale", "lr_x", "lambda_min", "alpha"], Range] = Field(
        default_factory=lambda: dict(SEARCH_RANGES), description="[low, high] per searched setting"
    )
    early_stop_step: int = Field(0, ge=0, le=100_000_000, description="0 = no early stop")
    early_stop_keep: float = Field(0.5, gt=0, le=1)
    select: SelectRule = "kkt_residual"
    select_top: int = Field(0, ge=0, le=1024, description="restarts pooled at the end; 0 = every survivor")

    @field_validator("search_ranges")
    @classmethod
    def _ordered_positive(cls, ranges: dict) -> dict:
        for key, (low, high) in ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"{key}: expected 0 < low <= high, got [{low}, {high}]")
        return {**SEARCH_RANGES, **ranges}

    @classmethod
    def validated(cls, values: dict, field: str = "attack") -> KKTConfig:
        """Validate ``values``; a bad setting raises :class:`ConfigError` naming ``field.setting``."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(first_error(error, field)) from None


class KKTAttack:
    """Reconstruct training inputs of a ReLU MLP from its weights via the KKT conditions."""

    name = "kkt"

    def __init__(self, config: KKTConfig | None = None, **overrides) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = KKTConfig.validated({**base, **overrides})

    @property
    def steps(self) -> int:
        return self.config.steps

    def run(
        self,
        layers: MLPLayers,
        knowledge: AttackerKnowledge,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = DEFAULT_DTYPE,
        progress: ProgressCallback | None = None,
        initial: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> AttackOutput:
        """Run the attack on a victim's layers.

        The relative alpha is set from ``knowledge.reference_inputs`` (uniform draws in the valid range
        when None). initial: (x, lambdas, labels) to start every restart from instead of the random
        init (tests and diagnostics, e.g. starting at the true training set).
        """
        cfg = self.config
        dtype = resolve_dtype(dtype)
        start = time.perf_counter()
        victim, requested = layers, dtype  # kept for the float64 refinement, which promotes the working dtype
        generator = torch.Generator(device="cpu").manual_seed(seed)
        layers, lower, upper = self._placed(victim, knowledge, device, dtype)
        reference = None if knowledge.reference_inputs is None else torch.as_tensor(knowledge.reference_inputs)
        scale = self._alpha_scale(layers, lower, upper, reference, generator, device, dtype)
        settings = self._restart_settings(generator)
        hyper = self._per_restart(settings, device, dtype)

        classes = max(2, layers.outputs)
        m = max(classes, cfg.candidates_per_sample * knowledge.n_train)
        m += -m % classes  # the same number of candidates per class
        d, restarts = layers.input_dim, cfg.restarts
        if layers.outputs == 1:
            labels = torch.cat([torch.ones(m // 2), -torch.ones(m // 2)])
        else:
            labels = torch.arange(classes, dtype=torch.float64).repeat_interleave(m // classes)
        x = torch.randn(restarts, m, d, generator=generator, dtype=torch.float64)
        x *= torch.tensor(settings["init_scale"], dtype=torch.float64)[:, None, None]
        if cfg.init == "public":
            x += self._public_start(layers, reference, labels, restarts, generator)
        if cfg.lambda_sign == "free":
            lam = torch.randn(restarts, m, generator=generator, dtype=torch.float64)
        elif cfg.lambda_init == "uniform":
            lam = torch.rand(restarts, m, generator=generator, dtype=torch.float64)
        else:
            lam = torch.ones(restarts, m, dtype=torch.float64)
        if cfg.multiclass_margins == "all" and layers.outputs > 1:  # one multiplier per other class
            lam = lam.unsqueeze(-1).expand(restarts, m, layers.outputs) / (layers.outputs - 1)
        if initial is not None:
            x, lam, labels = (t.detach().cpu().double() for t in initial)
            m = len(labels)
            x, lam = x.expand(restarts, m, d).clone(), lam.expand(restarts, m).clone()
        labels = labels.to(device=device, dtype=dtype)
        scorer = self._scorer(layers, labels, lower, upper, knowledge, device, dtype)
        x = x.to(device=device, dtype=dtype).requires_grad_(True)
        lam = lam.to(device=device, dtype=dtype).requires_grad_(True)
        optimizer = _BatchedOptimizer(cfg, [x, lam], [hyper["lr_x"], hyper["lr_lambda"]])
        alive = torch.arange(restarts)  # original restart index of each batch position
        active = torch.ones(restarts, dtype=torch.bool, device=device)
        diverged: list[dict] = []
        early_stopped: list[int] = []
        history, steps_logged = [], []
        final_loss = np.full(restarts, np.nan)
        residual = np.full(restarts, np.nan)
        theta_norm = layers.norm().item()
        losses = torch.zeros(restarts, dtype=dtype, device=device)
        refine_at = max(0, cfg.steps - cfg.refine_steps) if cfg.refine_steps and dtype != torch.float64 else -1

        for step in range(cfg.steps + 1):
            if 0 < step == cfg.early_stop_step < cfg.steps and len(alive) > 1:
                # score with the latest losses (one step old) and the current candidates
                keep = self._best(scorer(x.detach(), losses.detach()), active, cfg.early_stop_keep)
                early_stopped += [int(r) for r in alive[~_mask(keep, len(alive))]]
                x, lam, active, alive = _take(x, keep), _take(lam, keep), active[keep], alive[keep.cpu()]
                hyper, initial = {k: v[keep] for k, v in hyper.items()}, initial[keep]
                optimizer = optimizer.carry([x, lam], [hyper["lr_x"], hyper["lr_lambda"]], keep)
            if step == refine_at:  # from here on float64, placed afresh from the caller's weights and settings
                dtype, every = torch.float64, torch.arange(len(alive), device=device)
                layers, lower, upper = self._placed(victim, knowledge, device, dtype)
                hyper = {k: v[alive.to(device)] for k, v in self._per_restart(settings, device, dtype).items()}
                labels, x, lam = labels.to(dtype), _take(x, every, dtype), _take(lam, every, dtype)
                optimizer = optimizer.carry([x, lam], [hyper["lr_x"], hyper["lr_lambda"]], every)
                scorer = self._scorer(layers, labels, lower, upper, knowledge, device, dtype)
            alpha = hyper["alpha"] / scale
            stationarity = stationarity_loss(layers, x, lam, labels, alpha)
            prior = (torch.relu(x - upper).pow(2) + torch.relu(lower - x).pow(2)).sum((1, 2))
            losses = stationarity + cfg.prior_weight * prior
            if cfg.lambda_sign == "positive":
                shortfall = torch.relu(hyper["lambda_min"][:, None] - candidate_lambdas(lam, labels))
                losses = losses + cfg.lambda_weight * shortfall.pow(2).sum(1)
            if step == 0:
                initial = losses.detach().clone()
            if step % cfg.log_every == 0 or step in (cfg.steps, cfg.early_stop_step - 1):
                # diverged: NaN/inf, or finite but grown far beyond where it started
                finite = torch.isfinite(losses) & torch.isfinite(x).all((1, 2)) & (losses <= DIVERGED * initial)
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
        facts = AttackFacts(
            name=self.name,
            selection_rule=cfg.select,
            selection=SELECTION_RULES[cfg.select],
            restarts=restarts,
            candidates=len(candidates),
            restart_settings=settings,
            restart_scores=scores.tolist(),
            final_loss=final_loss.tolist(),
            relative_residual=residual.tolist(),
            selected_restarts=sorted(int(r) for r in alive[kept]),
            early_stopped_restarts=early_stopped,
            diverged=diverged,
            alpha_scale=float(scale),
            seconds=time.perf_counter() - start,
            device=str(device),
            dtype=str(requested).removeprefix("torch."),
            seed=seed,
        )
        return AttackOutput(
            candidates=candidates,
            lambdas=candidate_lambdas(lam, labels).detach()[chosen].cpu().double().flatten().numpy(),
            labels=labels.cpu().repeat(len(kept)).double().numpy(),
            restart=alive[kept].repeat_interleave(m).numpy(),
            loss_history=np.array(history),
            history_steps=np.array(steps_logged),
            facts=facts,
        )

    def _placed(self, victim: MLPLayers, knowledge: AttackerKnowledge, device, dtype) -> tuple:
        """The victim's layers and the prior's per-pixel bounds (lower, upper), on ``device`` in ``dtype``."""
        lower = torch.as_tensor(knowledge.lower).to(device=device, dtype=dtype).flatten()
        upper = torch.as_tensor(knowledge.upper).to(device=device, dtype=dtype).flatten()
        if self.config.prior == "box":
            lower, upper = torch.full_like(lower, -1.0), torch.full_like(upper, 1.0)
        return victim.to(device, dtype), lower, upper

    def _per_restart(self, settings: dict[str, list[float]], device, dtype) -> dict[str, torch.Tensor]:
        """Each restart's settings as (R,) tensors, with the (shared) multipliers' learning rate beside them."""
        hyper = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in settings.items()}
        return hyper | {"lr_lambda": torch.full_like(hyper["lr_x"], self.config.lr_lambda)}

    def _scorer(self, layers, labels, lower, upper, knowledge: AttackerKnowledge, device, dtype) -> Scorer:
        """The configured selection rule as a scorer (higher is better)."""
        rule = self.config.select
        if rule == "kkt_residual":
            return residual_scorer(layers, labels, lower, upper)
        if rule == "kkt_loss":
            return _kkt_loss_score
        if knowledge.ground_truth is None:
            raise ConfigError(
                "attack.select: 'ground_truth' ranks restarts by the training set, but none was given "
                "(the Auditor passes it; an outside attacker has none: use 'kkt_residual')"
            )
        offset = np.zeros(knowledge.ground_truth.shape[1]) if knowledge.pixel_offset is None else knowledge.pixel_offset
        return ground_truth_scorer(knowledge.ground_truth + offset, offset, device, dtype)

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

    @staticmethod
    def _public_start(layers: MLPLayers, reference, labels: torch.Tensor, restarts: int, generator) -> torch.Tensor:
        """(R, m, d) start images: for each candidate a public input the victim assigns to the candidate's
        class (any public input when it assigns none to that class), distinct within a restart while they last."""
        if reference is None or len(reference) == 0:
            raise ConfigError("attack.init: 'public' needs public data of the same distribution (non-members)")
        reference = reference.double()
        outputs = forward(layers.to("cpu", torch.float64), reference)
        predicted = torch.where(outputs > 0, 1.0, -1.0) if layers.outputs == 1 else outputs.argmax(1).double()
        start = torch.empty(restarts, len(labels), reference.shape[1], dtype=torch.float64)
        for label in labels.unique():
            slots = torch.nonzero(labels == label).flatten()
            pool = torch.nonzero(predicted == label).flatten()
            pool = pool if len(pool) else torch.arange(len(reference))
            for restart in range(restarts):
                order = pool[torch.randperm(len(pool), generator=generator)]
                start[restart, slots] = reference[order[torch.arange(len(slots)) % len(order)]]
        return start

    def _alpha_scale(self, layers, lower, upper, reference_inputs, generator, device, dtype) -> float:
        """What alpha is relative to: the victim's median |pre-activation| (1 for an absolute alpha)."""
        if not self.config.alpha_relative:
            return 1.0
        if reference_inputs is None:
            u = torch.rand(256, len(lower), generator=generator, dtype=torch.float64)
            reference_inputs = lower.cpu().double() + u * (upper - lower).cpu().double()
        scale = preactivation_scale(layers, reference_inputs.to(device=device, dtype=dtype))
        if not scale > 0:
            raise UnsupportedModelError(
                "the victim's hidden pre-activations are all zero at the reference inputs: relative alpha is "
                "undefined (set attack.alpha_relative: false)"
            )
        return scale


def _kkt_loss_score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    return -losses


def residual_scorer(layers: MLPLayers, labels: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> Scorer:
    """Minus the victim's KKT residual each restart's candidates leave (clamped to the valid range,
    multipliers refitted, exact ReLU): the ``kkt_residual`` rule."""

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        residuals = [kkt_residual(layers, c.clamp(lower, upper), labels)[0] for c in candidates]
        return torch.tensor(residuals, dtype=losses.dtype, device=losses.device).nan_to_num(nan=torch.inf).neg()

    return score


def ground_truth_scorer(
    train_pixels: np.ndarray, offset: np.ndarray, device: torch.device, dtype: torch.dtype
) -> Scorer:
    """The authors' sweep score: minus the mean NCC distance of the 10 best-matched training images
    (candidates + ``offset`` are pixels): the ``ground_truth`` rule."""
    train = standardize(torch.as_tensor(train_pixels, device=device, dtype=dtype))
    shift = torch.as_tensor(offset, device=device, dtype=dtype)

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pixels = standardize(candidates + shift)  # (R, m, d)
            distance = 2 - 2 * pixels @ train.T  # (R, m, n)
            nearest = distance.min(1).values  # (R, n)
            best = nearest.sort(1).values[:, : min(10, nearest.shape[1])]
            return torch.nan_to_num(-best.mean(1), nan=-torch.inf)

    return score


def _mask(index: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[index.cpu()] = True
    return mask


def _take(tensor: torch.Tensor, index: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new leaf holding the restarts at ``index`` (a copy), optionally in another dtype."""
    return tensor.detach()[index].to(dtype or tensor.dtype).requires_grad_(True)


class _BatchedOptimizer:
    """Adam or SGD-with-momentum on tensors whose first dimension is the restart; each restart has its
    own learning rate; frozen (diverged) restarts stay put."""

    def __init__(self, cfg: KKTConfig, params: list[torch.Tensor], lrs: list[torch.Tensor]) -> None:
        self.cfg, self.params, self.lrs = cfg, params, lrs
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.t = 0

    def carry(self, params: list[torch.Tensor], lrs: list[torch.Tensor], keep: torch.Tensor) -> _BatchedOptimizer:
        """The same optimizer on new parameters: the restarts at ``keep``, in the parameters' dtype (state kept)."""
        carried = _BatchedOptimizer(self.cfg, params, lrs)
        carried.state = [(m1[keep].to(p.dtype), m2[keep].to(p.dtype)) for p, (m1, m2) in zip(params, self.state)]
        carried.t = self.t
        return carried

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        factor = lr_factor(self.cfg, self.t)
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for p, lr, (m1, m2) in zip(self.params, self.lrs, self.state):
            grad = torch.nan_to_num(p.grad) * _expand(active, p)
            lr = _expand(lr, p) * factor
            if self.cfg.optimizer == "adam":
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
