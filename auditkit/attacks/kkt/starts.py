"""Where the attack's candidates start and with what: public-image starts, each restart's settings and the
victim's pre-activation scale that alpha is relative to."""

from __future__ import annotations

import math

import torch

from auditkit.attacks.kkt.config import LOG_UNIFORM, SEARCH_RANGES, KKTConfig
from auditkit.attacks.kkt.kernel import MLPLayers, Network, Objective, forward, preactivation_scale
from auditkit.errors import ConfigError, UnsupportedModelError
from auditkit.victims.models import assigned_classes


def predicted_labels(layers: MLPLayers | Network, inputs: torch.Tensor) -> torch.Tensor:
    """The class the victim assigns each input (float64, CPU), in the labels' encoding: -1/+1 for one output,
    0..C-1 for C."""
    with torch.no_grad():
        return assigned_classes(forward(layers.to("cpu", torch.float64), inputs.double()))


def public_start(
    layers: MLPLayers | Network, reference, labels: torch.Tensor, restarts: int, generator: torch.Generator
) -> torch.Tensor:
    """(R, m, d) start images: for each candidate a public input the victim assigns to the candidate's
    class (any public input when it assigns none to that class), distinct within a restart while they last."""
    if reference is None or len(reference) == 0:
        raise ConfigError("attack.init: 'public' needs public data of the same distribution (non-members)")
    reference = reference.double()
    predicted = predicted_labels(layers, reference)
    start = torch.empty(restarts, len(labels), reference.shape[1], dtype=torch.float64)
    for label in labels.unique():
        slots = torch.nonzero(labels == label).flatten()
        pool = torch.nonzero(predicted == label).flatten()
        pool = pool if len(pool) else torch.arange(len(reference))
        for restart in range(restarts):
            order = pool[torch.randperm(len(pool), generator=generator)]
            start[restart, slots] = reference[order[torch.arange(len(slots)) % len(order)]]
    return start


def alpha_scale(
    layers: MLPLayers | Network, lower, upper, reference_inputs, generator: torch.Generator, device, dtype
) -> float:
    """What a relative alpha is divided by: the victim's median |pre-activation| at the public inputs (uniform
    draws in [lower, upper] when there are none)."""
    if reference_inputs is None:
        u = torch.rand(256, len(lower), generator=generator, dtype=torch.float64)
        reference_inputs = lower.cpu().double() + u * (upper - lower).cpu().double()
    scale = preactivation_scale(layers, reference_inputs.to(device=device, dtype=dtype))
    if not scale > 0:
        raise UnsupportedModelError(
            "the victim's hidden pre-activations are all zero at the reference inputs: its hidden layers pass "
            "nothing on (zero or subnormal weights, or biases no input overcomes), so the attack has nothing to read"
        )
    return scale


def restart_settings(config: KKTConfig, generator: torch.Generator) -> dict[str, list[float]]:
    """Per-restart (init_scale, lr_x, lambda_min, alpha): the config's, then random draws from its search ranges
    when it searches (log-uniform for LOG_UNIFORM settings)."""
    settings = {key: [float(getattr(config, key))] for key in SEARCH_RANGES}
    drawn = config.restarts - 1 if config.search == "random" else 0
    for key, values in settings.items():
        low, high = config.search_ranges[key]
        u = torch.rand(drawn, generator=generator, dtype=torch.float64)
        if key in LOG_UNIFORM:
            values += torch.exp(math.log(low) + u * (math.log(high) - math.log(low))).tolist()
        else:
            values += (low + u * (high - low)).tolist()
        values += values[:1] * (config.restarts - len(values))
    return settings


def initial_candidates(
    config: KKTConfig,
    objective: Objective,
    classifier: Objective,
    reference: torch.Tensor | None,
    settings: dict[str, list[float]],
    n_train: int,
    generator: torch.Generator,
    initial: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every restart's start (float64, CPU): candidates (R, m, d), multipliers (R, m) or (R, m, C) and the m
    labels, as many per class; random draws scaled by each restart's ``init_scale`` (around public inputs the
    ``classifier`` assigns each label, for ``init: public``), or ``initial`` (x, lambdas, labels) for every restart."""
    classes, restarts, d = max(2, objective.outputs), config.restarts, objective.input_dim
    m = max(classes, config.candidates_per_sample * n_train)
    m += -m % classes  # the same number of candidates per class
    if objective.outputs == 1:
        labels = torch.cat([torch.ones(m // 2), -torch.ones(m // 2)])
    else:
        labels = torch.arange(classes, dtype=torch.float64).repeat_interleave(m // classes)
    x = torch.randn(restarts, m, d, generator=generator, dtype=torch.float64)
    x *= torch.tensor(settings["init_scale"], dtype=torch.float64)[:, None, None]
    if config.init == "public":
        x += public_start(classifier.target, reference, labels, restarts, generator)
    if config.lambda_sign == "free":
        lam = torch.randn(restarts, m, generator=generator, dtype=torch.float64)
    elif config.lambda_init == "uniform":
        lam = torch.rand(restarts, m, generator=generator, dtype=torch.float64)
    else:
        lam = torch.ones(restarts, m, dtype=torch.float64)
    if config.multiclass_margins == "all" and objective.outputs > 1:  # one multiplier per other class
        lam = lam.unsqueeze(-1).expand(restarts, m, objective.outputs) / (objective.outputs - 1)
    if initial is not None:
        x, lam, labels = (t.detach().cpu().double() for t in initial)
        m = len(labels)
        x, lam = x.expand(restarts, m, d).clone(), lam.expand(restarts, *lam.shape).clone()
    return x, lam, labels
