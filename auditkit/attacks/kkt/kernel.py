"""Closed-form KKT stationarity kernel for ReLU MLPs, one output (binary) or C outputs (multiclass).

For an MLP, ``sum_j c_j grad_theta Phi(x_j)`` is a few matrix products: per-layer deltas
propagated back from the coefficients ``c`` (for C outputs a C-vector per sample: the direction of
that sample's margin, ``e_y - e_k`` with k the runner-up class, times its multiplier). The attack's
loss is built on that closed form (autograd then supplies the gradient in x and lambda with one
backward pass instead of a double-backward). ``auditkit.attacks.kkt.reference`` keeps the authors'
formulation as a reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from auditkit.attacks.kkt.tracing import ModelGraphError, linear_chain
from auditkit.errors import UnsupportedModelError
from auditkit.victims.models import unwrap


@dataclass(frozen=True)
class MLPLayers:
    """Weights and biases of a ReLU MLP, first layer first; ``biases[i]`` is None when absent."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor | None, ...]

    @property
    def parameters(self) -> list[torch.Tensor]:
        """Every weight and bias, layer by layer (biases only where present)."""
        params = []
        for weight, bias in zip(self.weights, self.biases):
            params.append(weight)
            if bias is not None:
                params.append(bias)
        return params

    @property
    def input_dim(self) -> int:
        """The width of the first layer's input."""
        return self.weights[0].shape[1]

    @property
    def outputs(self) -> int:
        """1 for a binary classifier (labels -1/+1), C for a C-class one (labels 0..C-1)."""
        return self.weights[-1].shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> MLPLayers:
        """The layers on ``device`` in ``dtype``, with subnormal weights set to 0: weight decay leaves the
        weights of dead units at 1e-39 and below, and subnormal numbers slow CPU matrix products by 100x
        or more (measured: a victim with 127,000 of them attacked 7x slower, 63 s against 8.9 s for 400
        steps); as weights they are 0 in all but name."""
        tiny = torch.finfo(dtype).tiny

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            moved = t.detach().to(device=device, dtype=dtype)
            return moved.masked_fill(moved.abs() < tiny, 0.0)

        return MLPLayers(tuple(move(w) for w in self.weights), tuple(move(b) for b in self.biases))

    def norm(self) -> torch.Tensor:
        """||theta||: the Euclidean norm of all parameters together (float64)."""
        return torch.sqrt(sum((p.double() ** 2).sum() for p in self.parameters))


def extract_layers(model: nn.Module) -> MLPLayers:
    """The Linear layers of a ReLU MLP (one output, or C), in the order its ``forward`` applies them
    (read by tracing it: :mod:`auditkit.attacks.kkt.tracing`)."""
    try:
        linears = linear_chain(unwrap(model))
    except ModelGraphError as error:
        raise UnsupportedModelError(str(error)) from None
    return MLPLayers(tuple(m.weight for m in linears), tuple(m.bias for m in linears))


SMOOTH_STEP_FLOOR = 30.0


class _SmoothReLU(torch.autograd.Function):
    """Exact ReLU forward; backward uses sigmoid(alpha z), itself differentiable (second-order terms)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z, alpha)
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, alpha = ctx.saved_tensors
        return grad * smooth_step(z, alpha), None


def smooth_relu(z: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """ReLU whose derivative is sigmoid(alpha z) in the backward pass (exact forward)."""
    alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device)
    return _SmoothReLU.apply(z, alpha)


def forward(layers: MLPLayers, x: torch.Tensor) -> torch.Tensor:
    """Exact network output Phi(x): shape ``x.shape[:-1]`` for one output, ``(*x.shape[:-1], C)`` for C."""
    h = x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        h = torch.relu(linear(h, weight, bias))
    out = linear(h, layers.weights[-1], layers.biases[-1])
    return out.squeeze(-1) if layers.outputs == 1 else out


def margin_directions(layers: MLPLayers, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample, the output-space direction whose gradient is the margin's, shape ``(*x.shape[:-1], C)``.

    One output: the label y in {-1, +1} (margin y Phi(x)). C outputs: ``e_y - e_k`` with k the runner-up
    class ``argmax_{k != y} Phi_k(x)`` at the current x (exact ReLU; margin ``Phi_y - Phi_k``). A tie
    for the runner-up takes the lowest index (argmax); the choice is held fixed within a step, so the
    gradient is that of the active piece of the max, as for the ReLU itself.
    """
    if layers.outputs == 1:
        return labels.to(x.dtype).expand(x.shape[:-1]).unsqueeze(-1)
    with torch.no_grad():
        logits = forward(layers, x.detach())
        classes = labels.long().expand(x.shape[:-1])
        runner_up = logits.scatter(-1, classes.unsqueeze(-1), -torch.inf).argmax(-1)
    eye = torch.eye(layers.outputs, dtype=x.dtype, device=x.device)
    return eye[classes] - eye[runner_up]


def margins(layers: MLPLayers, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``y Phi(x)`` (one output) or ``Phi_y(x) - max_{k != y} Phi_k(x)`` (C outputs): positive = correct."""
    with torch.no_grad():
        out = forward(layers, x)
        if layers.outputs == 1:
            return out * labels
        return (margin_directions(layers, x, labels) * out).sum(-1)


def hidden_preactivations(layers: MLPLayers, x: torch.Tensor) -> list[torch.Tensor]:
    """Each hidden layer's pre-activations z at inputs ``x``, first layer first."""
    zs, h = [], x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        z = linear(h, weight, bias)
        zs.append(z)
        h = torch.relu(z)
    return zs


def preactivation_scale(layers: MLPLayers, x: torch.Tensor) -> float:
    """Median |z| over all hidden pre-activations at inputs x: the scale alpha must match."""
    with torch.no_grad():
        zs = hidden_preactivations(layers, x)
        return torch.cat([z.abs().flatten() for z in zs]).median().item()


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``h W^T (+ b)``: one Linear layer on a batch of rows."""
    out = h @ weight.T
    return out if bias is None else out + bias


def gradient_combination(
    layers: MLPLayers, x: torch.Tensor, coefficients: torch.Tensor, alpha: torch.Tensor | float
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``sum_j c_j grad_theta Phi(x_j)`` per layer, for a batch of restarts.

    x: (R, m, d); coefficients: (R, m) for one output, (R, m, C) for C outputs (c_j is then the
    output-space vector the gradient is taken along); alpha: scalar or (R,). The ReLU derivative is
    sigmoid(alpha z) (float('inf') gives the exact step). Returns [(G_W (R,out,in), G_b (R,out) or None)].
    """
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    alpha = alpha.reshape(-1, 1, 1) if alpha.ndim else alpha
    inputs, zs, h = [], [], x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        inputs.append(h)
        z = linear(h, weight, bias)
        zs.append(z)
        h = smooth_relu(z, alpha)
    inputs.append(h)
    delta = coefficients.unsqueeze(-1) if coefficients.ndim == 2 else coefficients
    grads = []
    for index in range(len(layers.weights) - 1, -1, -1):
        grad_w = delta.transpose(1, 2) @ inputs[index]
        grad_b = delta.sum(1) if layers.biases[index] is not None else None
        grads.append((grad_w, grad_b))
        if index > 0:
            delta = (delta @ layers.weights[index]) * _relu_derivative(zs[index - 1], alpha)
    return grads[::-1]


def _relu_derivative(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    if torch.isinf(alpha).all():
        return (z > 0).to(z.dtype)
    return smooth_step(z, alpha)


def smooth_step(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """sigmoid(alpha z), the smoothed ReLU derivative, floored at sigmoid(-SMOOTH_STEP_FLOOR) = 9e-14.

    Unfloored, the units far below 0 get 1e-38 and smaller: subnormal floats, and every matrix product
    they enter runs 5-8x slower on a CPU (measured: the attack's (4, 500, 200) x (4, 200, 784) product took
    19 ms instead of 2.6). A slope of 9e-14 instead of less changes nothing the attack can see.
    """
    return torch.sigmoid((alpha * z).clamp_min(-SMOOTH_STEP_FLOOR))


def _own_class(lambdas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), lambdas.shape[-1]).to(lambdas.dtype)


def candidate_lambdas(lambdas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each candidate's total multiplier, (R, m), from the attack's (R, m) multipliers (one per candidate)
    or (R, m, C) ones (one per other class: summed; a candidate's own class carries none)."""
    if lambdas.ndim == 3:
        return (lambdas * (1 - _own_class(lambdas, labels))).sum(-1)
    return lambdas


def margin_coefficients(layers: MLPLayers, x: torch.Tensor, lambdas: torch.Tensor, labels: torch.Tensor):
    """Per candidate, the output-space vector its gradient term is taken along: ``lambda_j`` times its
    margin direction (lambdas (..., m)), or ``sum_k lambda_jk (e_y - e_k)`` (lambdas (..., m, C): one
    multiplier per other class)."""
    if lambdas.ndim == x.ndim:
        own = _own_class(lambdas, labels)
        others = lambdas * (1 - own)
        return own * others.sum(-1, keepdim=True) - others
    return lambdas.unsqueeze(-1) * margin_directions(layers, x, labels)


def stationarity_loss(
    layers: MLPLayers,
    x: torch.Tensor,
    lambdas: torch.Tensor,
    labels: torch.Tensor,
    alpha,
    target: MLPLayers | None = None,
) -> torch.Tensor:
    """Per-restart ``sum_p ||t_p - (1/m) sum_j lambda_j dmargin_j/dp||^2``, shape (R,); x (R, m, d),
    lambdas (R, m), labels (m,) (see :func:`margin_directions`).

    The gradients are taken at ``layers`` (the linearisation point); ``target`` is the parameter-shaped
    vector they must explain, the layers themselves when None (the KKT condition). With the initial
    weights known, target ``theta_T - theta_0`` and gradients at ``theta_0`` make the owner's version.
    """
    target = layers if target is None else target
    coefficients = margin_coefficients(layers, x, lambdas, labels) / x.shape[1]
    total = x.new_zeros(x.shape[0])
    for (grad_w, grad_b), weight, bias in zip(
        gradient_combination(layers, x, coefficients, alpha), target.weights, target.biases
    ):
        total = total + (weight - grad_w).pow(2).sum((1, 2))
        if bias is not None:
            total = total + (bias - grad_b).pow(2).sum(1)
    return total


def per_sample_gram(
    layers: MLPLayers, x: torch.Tensor, directions: torch.Tensor, target: MLPLayers | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix K_ij = <g_i, g_j> and b_i = <g_i, t> of the margin gradients g_i (the gradient of
    ``directions[i] . Phi(x_i)``, taken at ``layers``; see :func:`margin_directions`), exact ReLU; the
    target t is ``target``'s parameters, the layers' own when None.

    Per-sample gradients factor as outer products (delta_l[i] h_{l-1}[i]^T), so neither the (n, P)
    Jacobian nor per-sample grads are ever materialised.
    """
    inputs, zs, h = [], [], x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        inputs.append(h)
        z = linear(h, weight, bias)
        zs.append(z)
        h = torch.relu(z)
    inputs.append(h)
    n, target = x.shape[0], layers if target is None else target
    gram = x.new_zeros(n, n)
    theta_dot = x.new_zeros(n)
    delta = directions
    for index in range(len(layers.weights) - 1, -1, -1):
        h_prev, weight, bias = inputs[index], layers.weights[index], layers.biases[index]
        delta_gram = delta @ delta.T
        gram += delta_gram * (h_prev @ h_prev.T)
        theta_dot += ((delta @ target.weights[index]) * h_prev).sum(1)
        if bias is not None:
            gram += delta_gram
            theta_dot += delta @ target.biases[index]
        if index > 0:
            delta = (delta @ weight) * (zs[index - 1] > 0).to(x.dtype)
    return gram, theta_dot


def kkt_residual(layers: MLPLayers, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Relative residual ``||theta - sum_i,k lambda_ik grad margin_ik(x_i)|| / ||theta||`` with lambda >= 0
    fitted: one output, margin y Phi(x); C outputs, one margin ``Phi_y - Phi_k`` per other class k (every
    constraint of the multiclass max-margin problem, whose KKT point a network trained with
    cross-entropy approaches; the attack's default, ``multiclass_margins: all``, fits the same margins).

    How close the victim is to a KKT point of the max-margin problem on (x, labels): near 0 at a KKT
    point, near 1 when the training gradients do not span theta. Returns (residual, fitted lambda per
    sample: summed over its classes k).
    """
    from scipy.optimize import nnls

    with torch.no_grad():
        layers64, x64 = layers.to("cpu", torch.float64), x.detach().to("cpu", torch.float64)
        labels64 = labels.detach().to("cpu", torch.float64)
        if layers.outputs == 1:
            rows, directions = x64, margin_directions(layers64, x64, labels64)
        else:
            eye = torch.eye(layers.outputs, dtype=torch.float64)
            others = [(i, k) for i, y in enumerate(labels64.long().tolist()) for k in range(layers.outputs) if k != y]
            owner = torch.tensor([i for i, _ in others])
            rows = x64[owner]
            directions = eye[labels64.long()[owner]] - eye[torch.tensor([k for _, k in others])]
        gram, theta_dot = per_sample_gram(layers64, rows, directions)
        theta_sq = (layers64.norm() ** 2).item()
    gram_np, b_np = gram.numpy(), theta_dot.numpy()
    jitter = 1e-12 * max(gram_np.trace(), 1e-300)
    factor = np.linalg.cholesky(gram_np + jitter * np.eye(len(b_np)))
    rhs = np.linalg.solve(factor, b_np)
    fitted, _ = nnls(factor.T, rhs, maxiter=50 * len(b_np))
    residual_sq = theta_sq - 2 * b_np @ fitted + fitted @ gram_np @ fitted
    per_sample = torch.from_numpy(fitted)
    if layers.outputs > 1:
        per_sample = torch.zeros(len(x64), dtype=torch.float64).index_add_(0, owner, per_sample)
    return float(np.sqrt(max(residual_sq, 0.0) / theta_sq)), per_sample
