"""The premise measure: how much of an objective's target the margin gradients at given inputs explain, with
the multipliers fitted (non-negative least squares over the exact per-sample Gram matrix)."""

from __future__ import annotations

import numpy as np
import torch

from auditkit.attacks.kkt.kernel import MLPLayers, Objective, as_objective, linear, margin_directions, parameter_dot

Factors = list[tuple[torch.Tensor, torch.Tensor, bool]]  # per layer, first first: (delta, layer input, has bias)


def _factors(layers: MLPLayers, x: torch.Tensor, directions: torch.Tensor) -> Factors:
    """Per-sample gradients of ``directions[i] . Phi(x_i)`` as outer products delta_l[i] h_{l-1}[i]^T
    (exact ReLU): never the (n, P) Jacobian itself."""
    inputs, zs, h = [], [], x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        inputs.append(h)
        z = linear(h, weight, bias)
        zs.append(z)
        h = torch.relu(z)
    inputs.append(h)
    factors, delta = [], directions
    for index in range(len(layers.weights) - 1, -1, -1):
        factors.append((delta, inputs[index], layers.biases[index] is not None))
        if index > 0:
            delta = (delta @ layers.weights[index]) * (zs[index - 1] > 0).to(x.dtype)
    return factors[::-1]


def _cross_gram(left: Factors, right: Factors) -> torch.Tensor:
    """<g_i, g'_j> between two points' per-sample gradients."""
    gram = 0
    for (delta_a, h_a, bias), (delta_b, h_b, _) in zip(left, right):
        delta_gram = delta_a @ delta_b.T
        gram = gram + delta_gram * (h_a @ h_b.T) + (delta_gram if bias else 0)
    return gram


def _dots(factors: Factors, vector: MLPLayers) -> torch.Tensor:
    """<g_i, v> for a parameter-shaped ``vector``."""
    total = 0
    for (delta, h_prev, bias), weight, offset in zip(factors, vector.weights, vector.biases):
        total = total + ((delta @ weight) * h_prev).sum(1)
        if bias:
            total = total + delta @ offset
    return total


def per_sample_gram(
    problem: MLPLayers | Objective, x: torch.Tensor, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix K_ij = <g_i, g_j> and b_i = <g_i, t> of the margin gradients g_i (the gradient of
    ``directions[i] . Phi(x_i)``, averaged over the objective's points; see :func:`margin_directions`),
    exact ReLU, with the objective's free direction projected out of both; t is its target (a bare MLP's
    own weights)."""
    objective = as_objective(problem)
    if not isinstance(objective.at, MLPLayers):
        return _network_gram(objective, x, directions)
    factors = [_factors(point, x, directions) for point in objective.points]
    count = len(factors)
    gram = sum(_cross_gram(a, b) for a in factors for b in factors) / count**2
    target_dot = sum(_dots(f, objective.target) for f in factors) / count
    if objective.free is not None:
        free_dot = sum(_dots(f, objective.free) for f in factors) / count
        free_sq = objective.free.norm() ** 2
        target_along = parameter_dot(objective.target.parameters, objective.free.parameters)
        gram = gram - torch.outer(free_dot, free_dot) / free_sq
        target_dot = target_dot - free_dot * target_along / free_sq
    return gram, target_dot


def _network_gram(objective: Objective, x: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`per_sample_gram` on a generic network: the per-sample gradients as rows (n, P), averaged over
    the objective's points."""
    rows = sum(point.per_sample_gradients(x, directions) for point in objective.points) / len(objective.points)
    target = _flat(objective.target.parameters)
    gram, target_dot = rows @ rows.T, rows @ target
    if objective.free is not None:
        free = _flat(objective.free.parameters)
        free_dot, free_sq = rows @ free, free @ free
        gram = gram - torch.outer(free_dot, free_dot) / free_sq
        target_dot = target_dot - free_dot * (target @ free) / free_sq
    return gram, target_dot


def _flat(parameters: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in parameters])


GRAM_COPIES = 4  # the Gram matrix, its jittered copy, its Cholesky factor and the solver's work


def residual_bytes(n_train: int, widths: list[int]) -> int:
    """What :func:`kkt_residual` allocates at most (float64) for ``n_train`` samples on a network of ``widths``
    (input first, outputs last): one row per sample and other class, their Gram matrix and per-layer factors."""
    rows = n_train * max(1, widths[-1] - 1)
    return 8 * (GRAM_COPIES * rows * rows + 2 * rows * sum(widths))


def kkt_residual(problem: MLPLayers | Objective, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Relative residual ``||t - sum_i,k lambda_ik grad margin_ik(x_i)|| / ||t||`` with lambda >= 0 fitted
    (and the objective's free direction projected out of t and the gradients): one output, margin y Phi(x);
    C outputs, one margin ``Phi_y - Phi_k`` per other class k (every constraint of the multiclass
    max-margin problem, whose KKT point a network trained with cross-entropy approaches; the attack's
    default, ``multiclass_margins: all``, fits the same margins).

    For a bare MLP (the KKT objective): how close the victim is to a KKT point of the max-margin problem on
    (x, labels), near 0 at one, near 1 when the training gradients do not span theta. Returns (residual,
    fitted lambda per sample: summed over its classes k).
    """
    from scipy.optimize import nnls

    with torch.no_grad():
        objective = as_objective(problem).to("cpu", torch.float64)
        x64, labels64 = x.detach().to("cpu", torch.float64), labels.detach().to("cpu", torch.float64)
        if objective.outputs == 1:
            rows, directions = x64, margin_directions(objective.at, x64, labels64)
        else:
            classes = objective.outputs
            eye = torch.eye(classes, dtype=torch.float64)
            others = [(i, k) for i, y in enumerate(labels64.long().tolist()) for k in range(classes) if k != y]
            owner = torch.tensor([i for i, _ in others])
            rows = x64[owner]
            directions = eye[labels64.long()[owner]] - eye[torch.tensor([k for _, k in others])]
        gram, target_dot = per_sample_gram(objective, rows, directions)
        target_sq = (objective.norm() ** 2).item()
    gram_np, b_np = gram.numpy(), target_dot.numpy()
    jitter = 1e-12 * max(gram_np.trace(), 1e-300)
    factor = np.linalg.cholesky(gram_np + jitter * np.eye(len(b_np)))
    rhs = np.linalg.solve(factor, b_np)
    fitted, _ = nnls(factor.T, rhs, maxiter=50 * len(b_np))
    residual_sq = target_sq - 2 * b_np @ fitted + fitted @ gram_np @ fitted
    per_sample = torch.from_numpy(fitted)
    if objective.outputs > 1:
        per_sample = torch.zeros(len(x64), dtype=torch.float64).index_add_(0, owner, per_sample)
    return float(np.sqrt(max(residual_sq, 0.0) / target_sq)), per_sample
