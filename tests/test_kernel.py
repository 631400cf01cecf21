"""The closed-form stationarity kernel against the authors' formulation (autograd double-backward)."""

from __future__ import annotations

import pytest
import torch

from auditkit.attacks.kkt.kernel import (
    Objective,
    extract_layers,
    forward,
    gradient_combination,
    margin_directions,
    margins,
    smooth_step,
    stationarity_loss,
)
from auditkit.attacks.kkt.network import stationarity_loss_autograd
from auditkit.attacks.kkt.residual import kkt_residual, per_sample_gram
from auditkit.errors import UnsupportedModelError
from auditkit.victims.models import build_mlp


def _random_problem(bias: str, restarts: int = 1, seed: int = 0, outputs: int = 1):
    torch.manual_seed(seed)
    model = build_mlp(12, [9, 7], bias, seed=seed, dtype=torch.float64, outputs=outputs)
    layers = extract_layers(model)
    m = 6
    x = torch.randn(restarts, m, 12, dtype=torch.float64, requires_grad=True)
    lam = torch.rand(restarts, m, dtype=torch.float64, requires_grad=True)
    labels = [1.0, 1, 1, -1, -1, -1] if outputs == 1 else [k % outputs for k in range(m)]
    return layers, x, lam, torch.tensor(labels, dtype=torch.float64)


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("bias", ["none", "first", "all"])
@pytest.mark.parametrize("alpha", [3.0, 40.0])
def test_closed_form_matches_double_backward(bias, alpha, outputs):
    layers, x, lam, labels = _random_problem(bias, outputs=outputs)
    fast = stationarity_loss(layers, x, lam, labels, alpha)[0]
    fast_grads = torch.autograd.grad(fast, [x, lam])
    reference = stationarity_loss_autograd(layers, x[0], lam[0], labels, alpha)
    reference_grads = torch.autograd.grad(reference, [x, lam])
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=0)
    for a, b in zip(fast_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_restarts_are_independent():
    layers, x, lam, labels = _random_problem("all", restarts=3)
    batched = stationarity_loss(layers, x, lam, labels, 10.0)
    for r in range(3):
        alone = stationarity_loss(layers, x[r : r + 1], lam[r : r + 1], labels, 10.0)
        torch.testing.assert_close(batched[r : r + 1], alone, rtol=1e-12, atol=0)


def test_exact_alpha_gives_true_gradient_combination():
    layers, x, lam, labels = _random_problem("all")
    coefficients = (lam * labels).detach()
    params = [p.detach().requires_grad_(True) for p in layers.parameters]
    model = build_mlp(12, [9, 7], "all", seed=0, dtype=torch.float64)
    with torch.no_grad():
        for p, q in zip(model.parameters(), params):
            p.copy_(q)
    output = model(x[0].detach()).squeeze(-1)
    expected = torch.autograd.grad(output, list(model.parameters()), grad_outputs=coefficients[0])
    combined = [g for pair in gradient_combination(layers, x.detach(), coefficients, float("inf")) for g in pair]
    for got, want in zip([g for g in combined if g is not None], expected):
        torch.testing.assert_close(got[0], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", ["none", "all"])
def test_one_multiplier_per_other_class_matches_double_backward(bias):
    layers, x, _, labels = _random_problem(bias, outputs=3)
    lam = torch.rand(1, 6, 3, dtype=torch.float64, requires_grad=True)
    fast = stationarity_loss(layers, x, lam, labels, 20.0)[0]
    reference = stationarity_loss_autograd(layers, x[0], lam[0], labels, 20.0)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=0)
    fast_grads = torch.autograd.grad(fast, [x, lam])
    for a, b in zip(fast_grads, torch.autograd.grad(reference, [x, lam])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    own = torch.nn.functional.one_hot(labels.long(), 3).bool()
    assert (fast_grads[1][0][own] == 0).all()  # a candidate's own class has no multiplier


def _jacobian(model, x, directions):
    """Rows: the gradient of ``directions[i] . model(x_i)`` in the parameters (autograd, one sample at a time)."""
    rows = []
    for sample, direction in zip(x, directions):
        grads = torch.autograd.grad((model(sample[None])[0] * direction).sum(), list(model.parameters()))
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


def _flat(layers):
    return torch.cat([t.flatten() for t in layers.parameters])


@pytest.mark.parametrize("outputs", [1, 3])
def test_per_sample_gram_matches_explicit_jacobian(outputs):
    model = build_mlp(12, [9, 7], "all", seed=1, dtype=torch.float64, outputs=outputs)
    layers = extract_layers(model)
    x = torch.randn(5, 12, dtype=torch.float64)
    directions = torch.randn(5, outputs, dtype=torch.float64)
    jacobian = _jacobian(model, x, directions)
    gram, theta_dot = per_sample_gram(layers, x, directions)
    torch.testing.assert_close(gram, jacobian @ jacobian.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(theta_dot, jacobian @ _flat(layers), rtol=1e-10, atol=1e-12)
    target = _shifted_target(layers)  # another vector to explain: the gradients stay the layers'
    same_gram, target_dot = per_sample_gram(Objective((layers,), target), x, directions)
    torch.testing.assert_close(same_gram, gram, rtol=0, atol=0)
    torch.testing.assert_close(target_dot, jacobian @ _flat(target), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", ["none", "all"])
def test_the_owners_gram_averages_two_points_and_projects_out_the_free_direction(bias):
    start, end = (build_mlp(12, [9, 7], bias, seed=s, dtype=torch.float64) for s in (1, 2))
    x = torch.randn(6, 12, dtype=torch.float64)
    directions = torch.tensor([[1.0], [1], [1], [-1], [-1], [-1]], dtype=torch.float64)
    jacobian = (_jacobian(start, x, directions) + _jacobian(end, x, directions)) / 2
    free = _flat(extract_layers(start))
    projector = torch.eye(len(free), dtype=torch.float64) - torch.outer(free, free) / free.dot(free)
    objective = Objective((extract_layers(start), extract_layers(end)), extract_layers(end), extract_layers(start))
    gram, target_dot = per_sample_gram(objective, x, directions)
    torch.testing.assert_close(gram, jacobian @ projector @ jacobian.T, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(target_dot, jacobian @ projector @ _flat(extract_layers(end)), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(objective.norm(), (projector @ _flat(extract_layers(end))).norm(), rtol=1e-12, atol=0)
    # the residual is the non-negative least-squares fit over those rows, the free multiple unconstrained
    residual, fitted = kkt_residual(objective, x, directions.squeeze(-1))
    goal = projector @ _flat(extract_layers(end))
    left = goal - (projector @ jacobian.T) @ fitted
    torch.testing.assert_close(
        torch.tensor(residual, dtype=torch.float64), left.norm() / goal.norm(), rtol=1e-6, atol=0
    )
    assert (fitted >= 0).all()


def test_multiclass_margin_is_taken_against_the_runner_up():
    layers, x, _, labels = _random_problem("all", outputs=3)
    logits = forward(layers, x[0].detach())
    directions = margin_directions(layers, x[0], labels)
    for row, label, direction in zip(logits, labels.long(), directions):
        others = row.clone()
        others[label] = -torch.inf
        expected = torch.zeros(3, dtype=torch.float64)
        expected[label], expected[others.argmax()] = 1.0, -1.0
        torch.testing.assert_close(direction, expected)
    expected_margins = (logits * directions).sum(-1)
    torch.testing.assert_close(margins(layers, x[0].detach(), labels), expected_margins)
    assert (margins(layers, x[0].detach(), labels) <= logits.max(-1).values - logits.min(-1).values).all()


def test_kkt_residual_is_small_at_the_training_set_only(small_victim):
    model, data = small_victim
    layers = extract_layers(model)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    at_truth, fitted = kkt_residual(layers, x, y)
    at_random, _ = kkt_residual(layers, torch.randn_like(x) * x.std(), y)
    at_non_members, _ = kkt_residual(layers, torch.as_tensor(data.pool_x[: len(x)]), y)
    # measured: 0.115 at the truth, 0.994 at random inputs, 0.916 at 20 non-members
    assert at_truth < 0.3
    assert at_random > 0.8
    assert at_non_members > 2 * at_truth
    assert (fitted >= 0).all()


def test_unsupported_models_are_named():
    assert (
        extract_layers(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))).outputs == 2
    )
    with pytest.raises(UnsupportedModelError, match="Tanh"):
        extract_layers(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)))


def test_per_restart_alpha_matches_separate_runs():
    layers, x, lam, labels = _random_problem("none", restarts=3)
    alphas = torch.tensor([5.0, 20.0, 80.0], dtype=torch.float64)
    batched = stationarity_loss(layers, x, lam, labels, alphas)
    for r in range(3):
        alone = stationarity_loss(layers, x[r : r + 1], lam[r : r + 1], labels, alphas[r].item())
        torch.testing.assert_close(batched[r : r + 1], alone, rtol=1e-12, atol=0)


def test_subnormal_weights_reach_the_attack_as_zeros():
    """Weight decay leaves dead units' weights subnormal (1e-39): as weights they are 0, and kept they slow
    every matrix product of the attack 7x (measured on mnist_dp's weight_decay victim)."""
    model = build_mlp(4, [3], "all", seed=0)
    with torch.no_grad():
        model[0].weight[0] = 1e-39
    layers = extract_layers(model).to("cpu", torch.float32)
    assert (layers.weights[0][0] == 0).all() and (layers.weights[0][1:] != 0).all()
    assert (extract_layers(model).to("cpu", torch.float64).weights[0][0] != 0).all()  # normal in float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_smoothed_relu_slope_is_never_subnormal(dtype):
    """Subnormal slopes slow every CPU matrix product they enter 5-8x: far below 0 the slope is floored."""
    z = torch.linspace(-1e4, 1e4, 200_001, dtype=dtype)
    slope = smooth_step(z, torch.tensor(40.0, dtype=dtype))
    assert (slope >= torch.finfo(dtype).tiny).all()
    assert torch.allclose(slope[z > -0.5], torch.sigmoid(40.0 * z[z > -0.5]))


def _shifted_target(layers, seed: int = 1):
    """A parameter-shaped target other than the layers themselves (e.g. theta_T - theta_0)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(t):
        return None if t is None else torch.randn(t.shape, generator=generator, dtype=t.dtype)

    return type(layers)(tuple(map(draw, layers.weights)), tuple(map(draw, layers.biases)))


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("bias", ["none", "all"])
@pytest.mark.parametrize("owners", [False, True])
def test_a_target_apart_from_the_linearisation_point_matches_double_backward(bias, outputs, owners):
    """The target apart from where the gradients are taken; ``owners``: the owner's attack's objective too
    (gradients averaged over two points, a free multiple of the first projected out)."""
    layers, x, lam, labels = _random_problem(bias, outputs=outputs)
    target = _shifted_target(layers)
    points = (layers, _shifted_target(layers, seed=2)) if owners else (layers,)
    objective = Objective(points, target, layers if owners else None)
    fast = stationarity_loss(objective, x, lam, labels, 20.0)[0]
    reference = stationarity_loss_autograd(objective, x[0], lam[0], labels, 20.0)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=0)
    for a, b in zip(torch.autograd.grad(fast, [x, lam]), torch.autograd.grad(reference, [x, lam])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.isclose(fast, stationarity_loss(layers, x, lam, labels, 20.0)[0])  # the target counts
