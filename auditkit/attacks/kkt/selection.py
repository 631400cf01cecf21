"""How the KKT attack ranks its restarts (``attack.select``): scorers over candidates, higher is better."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from auditkit.attacks.base import AttackerKnowledge
from auditkit.attacks.kkt.kernel import MLPLayers, Objective
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.errors import ConfigError
from auditkit.scoring.metrics import standardize

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (candidates (R, m, d), losses (R,)) -> (R,)


def kkt_loss_score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Minus each restart's attack loss: the ``kkt_loss`` rule."""
    return -losses


def residual_scorer(
    objective: MLPLayers | Objective, labels: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> Scorer:
    """Minus the victim's KKT residual each restart's candidates leave (clamped to the valid range,
    multipliers refitted, exact ReLU): the ``kkt_residual`` rule."""

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        residuals = [kkt_residual(objective, c.clamp(lower, upper), labels)[0] for c in candidates]
        return torch.tensor(residuals, dtype=losses.dtype, device=losses.device).nan_to_num(nan=torch.inf).neg()

    return score


def ground_truth_scorer(
    train_pixels: np.ndarray, to_pixels: Callable[[np.ndarray], np.ndarray], device: torch.device, dtype: torch.dtype
) -> Scorer:
    """The authors' sweep score: minus the mean NCC distance of the 10 best-matched training images
    (``to_pixels`` maps flat input rows to pixels, an affine map): the ``ground_truth`` rule."""
    train = standardize(torch.as_tensor(train_pixels, device=device, dtype=dtype))
    width = train.shape[1]
    shift = torch.as_tensor(to_pixels(np.zeros(width)), device=device, dtype=dtype).reshape(-1)
    scale = torch.as_tensor(to_pixels(np.ones(width)), device=device, dtype=dtype).reshape(-1) - shift

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pixels = standardize(candidates * scale + shift)  # (R, m, d)
            distance = 2 - 2 * pixels @ train.T  # (R, m, n)
            nearest = distance.min(1).values  # (R, n)
            best = nearest.sort(1).values[:, : min(10, nearest.shape[1])]
            return torch.nan_to_num(-best.mean(1), nan=-torch.inf)

    return score


def selection_scorer(
    rule: str, objective: Objective, labels, lower, upper, knowledge: AttackerKnowledge, device, dtype
) -> Scorer:
    """The selection rule ``rule`` (``attack.select``) as a scorer (higher is better)."""
    if rule == "kkt_residual":
        return residual_scorer(objective, labels, lower, upper)
    if rule == "kkt_loss":
        return kkt_loss_score
    if knowledge.ground_truth is None:
        raise ConfigError(
            "attack.select: 'ground_truth' ranks restarts by the training set, but none was given "
            "(the Auditor passes it; an outside attacker has none: use 'kkt_residual')"
        )
    return ground_truth_scorer(knowledge.to_pixels(knowledge.ground_truth), knowledge.to_pixels, device, dtype)
