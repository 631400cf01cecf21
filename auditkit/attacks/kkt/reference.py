"""The authors' formulation of the stationarity loss, a double-backward through the smoothed ReLU: the
reference the closed-form kernel (:mod:`auditkit.attacks.kkt.kernel`) is tested and benchmarked against."""

from __future__ import annotations

import torch

from auditkit.attacks.kkt.kernel import MLPLayers, Objective, as_objective, linear, margin_coefficients, smooth_relu


def _gradient_combination(layers: MLPLayers, x: torch.Tensor, coefficients: torch.Tensor, alpha: float) -> list:
    """``sum_j c_j grad_theta Phi(x_j)`` by autograd (kept differentiable in x and c)."""
    params = [p.detach().requires_grad_(True) for p in layers.parameters]
    rebuilt, it = [], iter(params)
    for bias in layers.biases:
        weight = next(it)
        rebuilt.append((weight, next(it) if bias is not None else None))
    h = x
    for weight, bias in rebuilt[:-1]:
        h = smooth_relu(linear(h, weight, bias), alpha)
    weighted = (linear(h, *rebuilt[-1]) * coefficients).sum(-1)
    return list(torch.autograd.grad(weighted, params, grad_outputs=torch.ones_like(weighted), create_graph=True))


def stationarity_loss_autograd(
    problem: MLPLayers | Objective,
    x: torch.Tensor,
    lambdas: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Reference: the authors' formulation, a double-backward through the smoothed ReLU (one restart;
    C outputs: the margin ``Phi_y - Phi_k`` with the runner-up k held fixed, as in the closed form), for any
    :class:`Objective` (points averaged, the free direction projected out) as :func:`stationarity_loss`."""
    objective = as_objective(problem)
    coefficients = margin_coefficients(objective.at, x, lambdas, labels) / x.shape[0]
    per_point = [_gradient_combination(point, x, coefficients, alpha) for point in objective.points]
    grads = [sum(parts) / len(per_point) for parts in zip(*per_point)]
    residuals = [t.detach() - g for t, g in zip(objective.target.parameters, grads)]
    total = sum(r.pow(2).sum() for r in residuals)
    if objective.free is not None:
        free = objective.free.parameters
        total = total - sum((r * f).sum() for r, f in zip(residuals, free)) ** 2 / sum(f.pow(2).sum() for f in free)
    return total
