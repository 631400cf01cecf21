"""Train the victim one defense describes: the scenario's recipe with the defense's overrides, or DP-SGD."""

from __future__ import annotations

import torch
from torch import nn

from auditkit.data import AuditData
from auditkit.dp import DPPlan, plan_dp, train_dp_sgd
from auditkit.environment import resolve_dtype, seed_everything
from auditkit.errors import AuditkitError
from auditkit.kernel import unwrap
from auditkit.progress import Progress
from auditkit.results import TrainingLog
from auditkit.scenario import DefenseConfig, Scenario
from auditkit.victims import build_mlp, train_mlp


class TrainingDiverged(AuditkitError):
    """A victim's training produced NaN or infinite weights or loss; the message says which and where."""


def plan_defenses(scenario: Scenario, n: int) -> dict[str, DPPlan]:
    """Resolve every DP defense's noise and budget before anything trains (impossible settings fail fast)."""
    plans = {}
    for index, defense in enumerate(scenario.defenses):
        if defense.kind == "dp_sgd":
            dp = defense.dp
            plans[defense.name] = plan_dp(
                n,
                batch_size=dp.batch_size,
                epochs=dp.epochs,
                max_grad_norm=dp.max_grad_norm,
                delta=dp.delta,
                target_epsilon=dp.target_epsilon,
                noise_multiplier=dp.noise_multiplier,
                accountant=dp.accountant,
                field=f"defenses.{index}.dp",
            )
    return plans


def untrained_victim(scenario: Scenario, data: AuditData) -> nn.Sequential:
    """The scenario's MLP at its seeded initialisation (what training starts from, what the cache fills)."""
    cfg = scenario.victim
    input_dim, seed, dtype = data.train_x.shape[1], scenario.seed, scenario.dtype
    return build_mlp(input_dim, cfg.hidden, cfg.bias, cfg.init_scale, seed, dtype, outputs=data.outputs)


def train_victim(
    scenario: Scenario,
    defense: DefenseConfig,
    data: AuditData,
    model: nn.Module,
    device: torch.device,
    progress: Progress,
    plan: DPPlan | None = None,
) -> tuple[nn.Module, TrainingLog]:
    """Train ``model`` as ``defense`` says; returns the clean module (wrappers stripped) and its log."""
    dtype = resolve_dtype(scenario.dtype)
    model = model.to(device)
    training = scenario.training_for(defense)
    x, y = (torch.as_tensor(a, dtype=dtype, device=device) for a in (data.train_x, data.train_y))
    test = tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in (data.test_x, data.test_y))
    seed_everything(scenario.seed)
    if plan is None:
        recipe = training.model_dump(exclude={"loss", "compile"})
        with progress.task(f"[{defense.name}] training", training.epochs, unit="epoch") as update:
            log = train_mlp(
                model,
                x,
                y,
                **recipe,
                seed=scenario.seed,
                test=test,
                progress=update,
                compile=training.compiled_on(device),
            )
    else:
        with progress.task(f"[{defense.name}] DP-SGD training", plan.epochs, unit="epoch") as update:
            log = train_dp_sgd(
                model,
                x,
                y,
                plan,
                lr=defense.dp.lr,
                weight_decay=training.weight_decay,
                seed=scenario.seed,
                test=test,
                progress=update,
            )
    model = unwrap(model)
    if not (all(torch.isfinite(p).all() for p in model.parameters()) and torch.isfinite(torch.tensor(log.final_loss))):
        raise TrainingDiverged(
            f"[{defense.name}] training diverged (final loss {log.final_loss}): lower the learning rate "
            f"({log.recipe.get('lr')}); the victim was not cached"
        )
    return model, log
