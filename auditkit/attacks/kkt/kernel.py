"""Closed-form KKT stationarity kernel for ReLU MLPs, one output (binary) or C outputs (multiclass).

For an MLP, ``sum_j c_j grad_theta Phi(x_j)`` is a few matrix products: per-layer deltas
propagated back from the coefficients ``c`` (for C outputs a C-vector per sample: the direction of
that sample's margin, ``e_y - e_k`` with k the runner-up class, times its multiplier). The attack's
loss is built on that closed form (autograd then supplies the gradient in x and lambda with one
backward pass instead of a double-backward). An :class:`Objective` says what the gradients must explain and
where they are taken (the KKT condition, or the owner's linearisation of training).
``auditkit.attacks.kkt.network`` is the generic path (any ReLU network, through autograd: the reference);
``auditkit.attacks.kkt.residual`` the premise measure (multipliers fitted at given inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
        return [p for layer in zip(self.weights, self.biases) for p in layer if p is not None]

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
        weights of dead units at 1e-39 and below, subnormal numbers slow CPU matrix products many times over
        (the manual, "The KKT attack"), and as weights they are 0 in all but name."""
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


@dataclass(frozen=True)
class Objective:
    """What the stationarity objective asks of candidates: the gradients of their margins, taken at each of
    ``points`` and averaged, combine to ``target`` up to a free multiple of ``free``.

    The KKT attack (Haim et al.): one point, the weights theta themselves, target theta, nothing free. The
    owner's attack: points theta_0 (and theta_T: the trapezoid rule of the training path), target theta_T,
    free theta_0 (``theta_T - c theta_0`` with c fitted: weight decay's shrinking of the init absorbed).
    """

    points: tuple[MLPLayers | Network, ...]
    target: MLPLayers | Network
    free: MLPLayers | Network | None = None

    @property
    def at(self) -> MLPLayers | Network:
        """The point the candidates' margins (classes, runner-ups) and alpha's scale are read at."""
        return self.points[0]

    @property
    def input_dim(self) -> int:
        """The width of the first layer's input."""
        return self.target.input_dim

    @property
    def outputs(self) -> int:
        """The victim's outputs (1: binary)."""
        return self.target.outputs

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Objective:
        """Every part on ``device`` in ``dtype`` (see :meth:`MLPLayers.to`)."""
        free = None if self.free is None else self.free.to(device, dtype)
        return Objective(tuple(p.to(device, dtype) for p in self.points), self.target.to(device, dtype), free)

    def norm(self) -> torch.Tensor:
        """||target|| with the free direction projected out (float64): what a relative residual divides by."""
        squared = self.target.norm() ** 2
        if self.free is not None:
            squared = squared - parameter_dot(self.target.parameters, self.free.parameters) ** 2 / self.free.norm() ** 2
        return squared.clamp_min(0).sqrt()


class Network(Protocol):
    """Any ReLU network the objective reads through autograd, the generic path
    (:class:`auditkit.attacks.kkt.network.ReLUNetwork`): what the MLP's closed form computes, as methods."""

    outputs: int
    input_dim: int
    parameters: list[torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Network:
        """A copy on ``device`` in ``dtype``."""

    def norm(self) -> torch.Tensor:
        """||theta|| (float64)."""

    def preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What each ReLU receives at flat inputs ``x``."""

    def per_sample_gradients(self, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """(n, P): the gradient in theta of ``directions[i] . Phi(x_i)`` per row (exact ReLU)."""

    def gradient_combination(
        self, x: torch.Tensor, coefficients: torch.Tensor, alpha, params: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``sum_j c_j grad_theta Phi(x_j)`` at ``params`` with the smooth-step ReLU, differentiable in x and c."""


def as_objective(problem: MLPLayers | Network | Objective) -> Objective:
    """``problem`` as an :class:`Objective`: a bare MLP is the KKT one (its own weights, explained at themselves)."""
    return problem if isinstance(problem, Objective) else Objective((problem,), problem)


def parameter_dot(left: list[torch.Tensor], right: list[torch.Tensor]) -> torch.Tensor:
    """<left, right> over every parameter tensor (float64)."""
    return sum((a.double() * b.double()).sum() for a, b in zip(left, right))


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


def forward(layers: MLPLayers | Network, x: torch.Tensor) -> torch.Tensor:
    """Exact network output Phi(x): shape ``x.shape[:-1]`` for one output, ``(*x.shape[:-1], C)`` for C."""
    if not isinstance(layers, MLPLayers):
        return layers(x)
    h = x
    for weight, bias in zip(layers.weights[:-1], layers.biases[:-1]):
        h = torch.relu(linear(h, weight, bias))
    out = linear(h, layers.weights[-1], layers.biases[-1])
    return out.squeeze(-1) if layers.outputs == 1 else out


def margin_directions(layers: MLPLayers | Network, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample, the output-space direction whose gradient is the margin's, shape ``(*x.shape[:-1], C)``
    (``layers``: an MLP, or any :class:`Network`).

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


def margins(layers: MLPLayers | Network, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


def preactivation_scale(layers: MLPLayers | Network, x: torch.Tensor) -> float:
    """Median |z| over all hidden pre-activations at inputs x: the scale alpha must match."""
    with torch.no_grad():
        zs = hidden_preactivations(layers, x) if isinstance(layers, MLPLayers) else layers.preactivations(x)
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
    """sigmoid(alpha z), the smoothed ReLU derivative, floored at sigmoid(-SMOOTH_STEP_FLOOR) = 9e-14: unfloored,
    units far below 0 get subnormal slopes that slow every CPU matrix product they enter several times over,
    and a slope of 9e-14 instead of less changes nothing the attack can see."""
    return torch.sigmoid((alpha * z).clamp_min(-SMOOTH_STEP_FLOOR))


def _own_class(lambdas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), lambdas.shape[-1]).to(lambdas.dtype)


def candidate_lambdas(lambdas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each candidate's total multiplier, (R, m), from the attack's (R, m) multipliers (one per candidate)
    or (R, m, C) ones (one per other class: summed; a candidate's own class carries none)."""
    if lambdas.ndim == 3:
        return (lambdas * (1 - _own_class(lambdas, labels))).sum(-1)
    return lambdas


def margin_coefficients(layers: MLPLayers | Network, x: torch.Tensor, lambdas: torch.Tensor, labels: torch.Tensor):
    """Per candidate, the output-space vector its gradient term is taken along: ``lambda_j`` times its
    margin direction (lambdas (..., m)), or ``sum_k lambda_jk (e_y - e_k)`` (lambdas (..., m, C): one
    multiplier per other class)."""
    if lambdas.ndim == x.ndim:
        own = _own_class(lambdas, labels)
        others = lambdas * (1 - own)
        return own * others.sum(-1, keepdim=True) - others
    return lambdas.unsqueeze(-1) * margin_directions(layers, x, labels)


def stationarity_loss(
    problem: MLPLayers | Objective, x: torch.Tensor, lambdas: torch.Tensor, labels: torch.Tensor, alpha
) -> torch.Tensor:
    """Per-restart ``||t - (1/m) sum_j lambda_j dmargin_j/dtheta||^2`` with the free direction's share
    projected out (see :class:`Objective`), shape (R,); x (R, m, d), lambdas (R, m), labels (m,) (see
    :func:`margin_directions`). A bare MLP is the KKT objective: its own weights, explained at themselves.
    """
    objective = as_objective(problem)
    if not isinstance(objective.at, MLPLayers):
        alphas = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).expand(len(x))
        return torch.stack([_network_loss(objective, x[r], lambdas[r], labels, alphas[r]) for r in range(len(x))])
    return _residual_norm(objective, explained(objective, x, lambdas, labels, alpha), 1)


def explained(objective: Objective, x: torch.Tensor, lambdas, labels, alpha) -> list[torch.Tensor]:
    """``(1/m) sum_j lambda_j dmargin_j/dtheta`` per restart (MLP), parameter-shaped, averaged over the points."""
    coefficients = margin_coefficients(objective.at, x, lambdas, labels) / x.shape[1]
    per_point = [
        [g for pair in gradient_combination(p, x, coefficients, alpha) for g in pair if g is not None]
        for p in objective.points
    ]
    return [sum(parts) / len(per_point) for parts in zip(*per_point)]


def _network_loss(objective: Objective, x: torch.Tensor, lambdas: torch.Tensor, labels: torch.Tensor, alpha):
    """One restart's loss on a generic network (x (m, d)), each point's gradient combination through autograd."""
    coefficients = margin_coefficients(objective.at, x, lambdas, labels) / x.shape[0]
    per_point = [point.gradient_combination(x, coefficients, alpha, point.parameters) for point in objective.points]
    return _residual_norm(objective, [sum(parts) / len(per_point) for parts in zip(*per_point)], 0)


def _residual_norm(objective: Objective, grads: list[torch.Tensor], batch_dims: int) -> torch.Tensor:
    """``||t - g||^2`` less the free direction's share, summed over all but the first ``batch_dims`` dims."""
    residuals = [t - g for t, g in zip(objective.target.parameters, grads)]
    total = sum(r.flatten(batch_dims).pow(2).sum(-1) for r in residuals)
    if objective.free is not None:
        free = objective.free.parameters
        along = sum((r * f).flatten(batch_dims).sum(-1) for r, f in zip(residuals, free))
        total = (total - along.pow(2) / sum(f.pow(2).sum() for f in free)).clamp_min(0)  # rounding aside
    return total
