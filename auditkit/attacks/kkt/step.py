"""One search step's losses (stationarity, the box prior, the multipliers' floor) as one function, run eagerly or
compiled (``attack.compile``): torch.compile fuses the step's many small kernels, and on a GPU its
"reduce-overhead" mode replays the step and its backward as CUDA graphs, one launch instead of hundreds."""

from __future__ import annotations

from collections.abc import Callable

import torch

from auditkit.attacks.kkt.kernel import MLPLayers, Objective, candidate_lambdas, stationarity_loss
from auditkit.errors import UnsupportedModelError

StepLosses = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def step_losses(
    objective: Objective,
    x: torch.Tensor,
    lam: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    lambda_min: torch.Tensor | None,
    prior_weight: float,
    lambda_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-restart (losses, stationarity), shape (R,) each: the stationarity residual plus ``prior_weight`` times
    the squared excess of x over [lower, upper], plus ``lambda_weight`` times the squared shortfall of each
    candidate's multipliers below ``lambda_min`` ((R,); None: signed multipliers, no floor)."""
    stationarity = stationarity_loss(objective, x, lam, labels, alpha)
    prior = (torch.relu(x - upper).pow(2) + torch.relu(lower - x).pow(2)).sum((1, 2))
    losses = stationarity + prior_weight * prior
    if lambda_min is not None:
        shortfall = torch.relu(lambda_min[:, None] - candidate_lambdas(lam, labels))
        losses = losses + lambda_weight * shortfall.pow(2).sum(1)
    return losses, stationarity


def losses_function(compiled: bool, objective: Objective, device: torch.device | str) -> StepLosses:
    """:func:`step_losses`, or its compiled form (``compiled``; MLP victims: the closed-form kernel). On a GPU
    each call first marks a new step, so that the previous replay's outputs, already consumed, are reused."""
    if not compiled:
        return step_losses
    if not isinstance(objective.target, MLPLayers):
        raise UnsupportedModelError("attack.compile: the compiled step runs on MLP victims (Linear and ReLU) only")
    graphs = torch.device(device).type == "cuda"
    fused = torch.compile(step_losses, mode="reduce-overhead" if graphs else None)
    if not graphs:
        return fused

    def replayed(*args) -> tuple[torch.Tensor, torch.Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        return fused(*args)

    return replayed
