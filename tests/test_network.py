"""The generic path (any ReLU network through autograd) against the MLP closed form, on convolutional networks,
and its refusals: the layers it cannot audit are named with their position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auditkit.attacks.kkt.kernel import extract_layers, stationarity_loss
from auditkit.attacks.kkt.network import ReLUNetwork, stationarity_loss_autograd
from auditkit.attacks.kkt.tracing import ModelGraphError


class FunctionalMLP(nn.Module):
    """An MLP written the way people write one: F.relu in forward, Dropout, a Flatten in front."""

    def __init__(self, outputs: int, bias: bool) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(12, 9, bias=bias)
        self.drop = nn.Dropout(0.5)
        self.deeper = nn.Linear(9, 7, bias=bias)
        self.head = nn.Linear(7, outputs, bias=bias)

    def forward(self, x):
        x = self.drop(F.relu(self.hidden(self.flatten(x))))
        return self.head(torch.relu(self.deeper(x)))


def _candidates(outputs: int, m: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, m, 12, dtype=torch.float64, generator=generator).requires_grad_(True)
    lam = torch.rand(1, m, dtype=torch.float64, generator=generator).requires_grad_(True)
    labels = [1.0, 1, 1, -1, -1, -1] if outputs == 1 else [k % outputs for k in range(m)]
    return x, lam, torch.tensor(labels, dtype=torch.float64)


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_the_generic_path_on_a_users_module_equals_the_closed_form(outputs, bias):
    torch.manual_seed(0)
    model = FunctionalMLP(outputs, bias).double()
    x, lam, labels = _candidates(outputs)
    fast = stationarity_loss(extract_layers(model), x, lam, labels, 20.0)[0]
    generic = stationarity_loss_autograd(model, x[0], lam[0], labels, 20.0)
    torch.testing.assert_close(generic, fast, rtol=1e-9, atol=0)
    for a, b in zip(torch.autograd.grad(generic, [x, lam]), torch.autograd.grad(fast, [x, lam])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_the_victim_is_left_untouched():
    model = FunctionalMLP(1, True).double().train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    network = ReLUNetwork(model)
    network(torch.randn(3, 12, dtype=torch.float64), alpha=10.0)
    assert model.training and all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert network.outputs == 1 and network.input_dim == 12


def _cnn(pool: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        pool,
        nn.Conv2d(3, 4, 3, stride=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).double()


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)], ids=["max", "avg"])
def test_a_cnn_reads_as_its_forward_and_its_gradient_combination_is_the_true_one(pool):
    model = _cnn(pool)
    network = ReLUNetwork(model, input_shape=(1, 6, 6))
    x = torch.randn(4, 36, dtype=torch.float64)
    torch.testing.assert_close(network(x), model(x.reshape(4, 1, 6, 6)), rtol=0, atol=0)
    torch.testing.assert_close(network(x, alpha=30.0), network(x), rtol=0, atol=0)  # the forward stays exact
    coefficients = torch.randn(4, 3, dtype=torch.float64)
    expected = torch.autograd.grad(model(x.reshape(4, 1, 6, 6)), list(model.parameters()), coefficients)
    sharp = network.gradient_combination(x, coefficients, 1e7, network.parameters)
    for got, want in zip(sharp, expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_the_cnn_objective_is_differentiable_in_the_candidates_and_multipliers():
    """With a sharp step (alpha 1e4: the smoothed derivative is the ReLU's away from the kinks) the attack's
    gradient is the loss's own, checked against finite differences; at a working alpha it is, by design, the
    smoothed surrogate (the authors' ModifiedReLU), which the closed-form tests pin down."""
    network = ReLUNetwork(_cnn(nn.MaxPool2d(2)), input_shape=(1, 6, 6))
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 36, dtype=torch.float64, generator=generator).requires_grad_(True)
    lam = torch.rand(3, 3, dtype=torch.float64, generator=generator).requires_grad_(True)
    labels = torch.tensor([0.0, 1, 2], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: stationarity_loss_autograd(network, a, b, labels, 1e4), (x, lam))


class Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 1)

    def forward(self, x):
        return self.b(torch.sin(self.a(x)))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 1)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else -self.a(x)


@pytest.mark.parametrize(
    "model, expected",
    [
        (nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 1)), "layer '1' (GELU, step 2)"),
        (nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 1)), "layer '1' (LayerNorm, step 2)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()), "normalisation: fold it into the layer"),
        (Gelu(), "operation 'sin' (call_function, step 2)"),
        (DataDependent(), "could not be traced with torch.fx"),
    ],
    ids=["gelu", "layernorm", "batchnorm", "custom op", "control flow"],
)
def test_a_layer_the_objective_does_not_cover_is_named_with_its_position(model, expected):
    with pytest.raises(ModelGraphError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ReLUNetwork(model, input_shape=(1, 4, 4))
