"""The victims a scenario's defenses describe: planned before anything trains, sized, built and trained, each by
its kind of defense (:mod:`auditkit.defenses`)."""

from __future__ import annotations

import torch
from torch import nn

from auditkit.config.schema import DefenseConfig, Scenario
from auditkit.data.audit_data import AuditData
from auditkit.defenses.base import Training
from auditkit.defenses.registry import defense_kind
from auditkit.environment import resolve_dtype, seed_everything
from auditkit.errors import AuditkitError, ConfigError
from auditkit.progress import Progress
from auditkit.results.facts import PrivacyFacts, TrainingLog
from auditkit.victims.models import build_cnn, build_mlp, cnn_widths, unwrap


class TrainingDiverged(AuditkitError):
    """A victim's training produced NaN or infinite weights or loss; the message says which and where."""


def plan_defenses(scenario: Scenario, n: int) -> dict[str, PrivacyFacts]:
    """Resolve every defense's plan (DP-SGD: its noise and budget) before anything trains, so impossible
    settings fail fast.

    Args:
        scenario: the scenario (one grid point).
        n: its training-set size.

    Returns:
        Defense name -> its planned mechanism, for the defenses that have one.
    """
    plans = {}
    for index, defense in enumerate(scenario.defenses):
        batch = defense.training.get("batch_size", scenario.victim.training.batch_size)
        if batch is not None and batch > n:
            where = f"defenses.{index}.training" if "batch_size" in defense.training else "victim.training"
            raise ConfigError(f"{where}.batch_size: {batch} is larger than the {n} training samples")
        plan = defense_kind(defense.kind).plan(defense, n, f"defenses.{index}.dp")
        if plan is not None:
            plans[defense.name] = plan
    return plans


def training_bytes(scenario: Scenario, defense: DefenseConfig, n: int, widths: list[int], parameters: int) -> int:
    """What training one victim allocates at most: parameters with their gradients and two optimiser states,
    a batch's activations (kept for the backward pass), and for DP-SGD the per-sample gradients of a batch
    (Poisson batches: twice the expected size).

    Args:
        scenario: the scenario (its dtype and recipe).
        defense: the defense (its batch size).
        n: training samples.
        widths: every layer's (flattened) output width, input first.
        parameters: the network's parameter count.

    Returns:
        Bytes.
    """
    itemsize = resolve_dtype(scenario.dtype).itemsize
    training = scenario.training_for(defense)
    rows = defense_kind(defense.kind).per_sample_rows(defense, n)  # per-sample gradients held at once (DP-SGD)
    batch = rows or min(n, training.batch_size or n)
    return itemsize * (4 * parameters + 3 * batch * sum(widths) + rows * parameters)


def victim_size(scenario: Scenario, data: AuditData) -> tuple[list[int], int]:
    """The scenario's network on ``data``: every layer's output width (input first) and its parameter count,
    by arithmetic (nothing allocated); a CNN whose layers do not fit the images raises ConfigError naming the
    layer."""
    cfg = scenario.victim
    if cfg.arch == "mlp":
        widths = [data.train_x.shape[1], *cfg.hidden, data.outputs]
        return widths, sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    try:
        return cnn_widths(_channels_first(data.image_shape), cfg.conv_layers(), cfg.hidden, data.outputs)
    except ValueError as error:
        raise ConfigError(f"victim.{error}") from None


def untrained_victim(scenario: Scenario, data: AuditData) -> nn.Sequential:
    """The scenario's network at its seeded initialisation (what training starts from, what the cache fills)."""
    cfg = scenario.victim
    seed, dtype, outputs = scenario.seed, scenario.dtype, data.outputs
    if cfg.arch == "cnn":
        shape = _channels_first(data.image_shape)
        return build_cnn(shape, cfg.conv_layers(), cfg.hidden, cfg.bias, cfg.init_scale, seed, dtype, outputs)
    return build_mlp(data.train_x.shape[1], cfg.hidden, cfg.bias, cfg.init_scale, seed, dtype, outputs=outputs)


def _channels_first(image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)


def train_victim(
    scenario: Scenario,
    defense: DefenseConfig,
    data: AuditData,
    model: nn.Module,
    device: torch.device,
    progress: Progress,
    plan: PrivacyFacts | None = None,
) -> tuple[nn.Module, TrainingLog]:
    """Train ``model`` as ``defense`` says.

    Args:
        scenario: the scenario (one grid point).
        defense: which of its defenses.
        data: its data set.
        model: the untrained victim (moved to ``device``).
        device: where training runs.
        progress: progress reporting.
        plan: the defense's planned mechanism (DP-SGD), from :func:`plan_defenses`.

    Returns:
        The clean module (wrappers stripped) and its training log.
    """
    dtype = resolve_dtype(scenario.dtype)
    model = model.to(device)
    x, y = (torch.as_tensor(a, dtype=dtype, device=device) for a in (data.train_x, data.train_y))
    test = tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in (data.test_x, data.test_y))
    seed_everything(scenario.seed)
    job = Training(scenario, defense, x, y, test, device, plan)
    log = defense_kind(defense.kind).train(model, job, progress)
    model = unwrap(model)
    if not (all(torch.isfinite(p).all() for p in model.parameters()) and torch.isfinite(torch.tensor(log.final_loss))):
        raise TrainingDiverged(
            f"[{defense.name}] training diverged (final loss {log.final_loss}): lower the learning rate "
            f"({log.recipe.get('lr')}); the victim was not cached"
        )
    return model, log
