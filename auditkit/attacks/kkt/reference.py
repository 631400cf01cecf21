"""The authors' formulation of the stationarity loss, a double-backward through the smoothed ReLU: the
reference the closed-form kernel (:mod:`auditkit.attacks.kkt.kernel`) is tested and benchmarked against."""

from __future__ import annotations

import torch

from auditkit.attacks.kkt.kernel import MLPLayers, linear, margin_coefficients, smooth_relu


def stationarity_loss_autograd(
    layers: MLPLayers,
    x: torch.Tensor,
    lambdas: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    target: MLPLayers | None = None,
) -> torch.Tensor:
    """Reference: the authors' formulation, a double-backward through the smoothed ReLU (one restart;
    C outputs: the margin ``Phi_y - Phi_k`` with the runner-up k held fixed, as in the closed form);
    ``target`` as in :func:`stationarity_loss`."""
    goal = (target or layers).parameters
    params = [p.detach().requires_grad_(True) for p in layers.parameters]
    rebuilt, it = [], iter(params)
    for bias in layers.biases:
        weight = next(it)
        rebuilt.append((weight, next(it) if bias is not None else None))
    h = x
    for weight, bias in rebuilt[:-1]:
        h = smooth_relu(linear(h, weight, bias), alpha)
    out = linear(h, *rebuilt[-1])
    weighted = (out * margin_coefficients(layers, x, lambdas, labels)).sum(-1)
    grads = torch.autograd.grad(
        weighted, params, grad_outputs=torch.ones_like(weighted) / x.shape[0], create_graph=True
    )
    return sum((t.detach() - g).pow(2).sum() for t, g in zip(goal, grads))
