"""Convolutional victims end to end: the generic path's premise measure against an explicit Jacobian, a CNN that
takes images audited from user code (Opacus's PrivacyEngine included), CNN victims in scenarios, and saved CNNs
from the command line with ``--arch``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from auditkit import Auditor, KKTAttack, OwnerAttack, load_scenario
from auditkit.attacks.kkt.kernel import extract_layers, preactivation_scale, stationarity_loss
from auditkit.attacks.kkt.network import ReLUNetwork, mlp_network
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.cli import main
from auditkit.config.loading import load_scenario as load_scenario_file
from auditkit.data.tasks import PARITY, binary_task
from auditkit.errors import AuditkitError, ConfigError, UnsupportedModelError
from auditkit.running.jobs import plan_victims
from auditkit.running.victims import untrained_victim, victim_size
from auditkit.victims.models import ConvLayer, build_cnn, build_mlp

NETS = '''
import torch
from torch import nn


class SmallCNN(nn.Module):
    """A CNN as people write one: images in, convolutions, pooling, F.relu in forward."""

    def __init__(self, channels=4, outputs=1):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 5, stride=2, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 36, 32, bias=False)
        self.head = nn.Linear(32, outputs, bias=False)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.head(torch.relu(self.fc(x.flatten(1))))
'''


_NETS_NAMESPACE: dict = {}
exec(NETS, _NETS_NAMESPACE)  # the class the CLI tests import from nets.py, for the Python API
SmallCNN = _NETS_NAMESPACE["SmallCNN"]


@pytest.fixture(scope="module")
def digits(mnist):
    """20 real MNIST digits (parity) with 200 non-members: images (n, 1, 28, 28) in [0, 1] and labels 0/1."""
    data = binary_task(*mnist, *PARITY, n_per_class=10, test_per_class=100, seed=0, image_shape=(28, 28), name="mnist")
    pixels = (data.train_x + data.mean).reshape(-1, 1, 28, 28)
    others = (data.pool_x[:200] + data.mean).reshape(-1, 1, 28, 28)
    return torch.as_tensor(pixels), torch.as_tensor((data.train_y > 0).astype(np.float64)), torch.as_tensor(others)


def _explicit_residual(network: ReLUNetwork, x, labels):
    """The KKT residual from a Jacobian built row by row with torch.autograd.grad (no vmap), NNLS by scipy."""
    from scipy.optimize import nnls

    params = [p.detach().clone().requires_grad_(True) for p in network.parameters]
    rows = []
    for one, label in zip(x, labels):
        out = network(one[None], params)
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(label * out.sum(), params)]))
    jacobian = torch.stack(rows).T.numpy()
    target = torch.cat([p.reshape(-1) for p in network.parameters]).numpy()
    fitted, distance = nnls(jacobian, target)
    return distance / np.linalg.norm(target), fitted


def test_the_generic_premise_measure_equals_an_explicit_jacobian_on_a_cnn(digits):
    x, y01, _ = digits
    torch.manual_seed(0)
    network = ReLUNetwork(nn.Sequential(nn.Unflatten(1, (1, 28, 28)), SmallCNN()).double())
    flat, labels = x.reshape(len(x), -1), 2 * y01 - 1
    residual, fitted = kkt_residual(network, flat, labels)
    expected, expected_fitted = _explicit_residual(network, flat, labels)
    assert residual == pytest.approx(expected, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(fitted.numpy(), expected_fitted, rtol=1e-5, atol=1e-8)
    assert 0 < residual < 1


@pytest.mark.parametrize("outputs", [1, 3])
def test_the_generic_path_equals_the_closed_form_in_the_premise_measure_and_alpha_scale(outputs):
    model = build_mlp(12, [9, 7], "all", seed=1, dtype=torch.float64, outputs=outputs)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 12, dtype=torch.float64, generator=generator)
    labels = torch.tensor([1.0, -1] * 4) if outputs == 1 else torch.arange(8, dtype=torch.float64) % outputs
    layers = extract_layers(model)
    fast, fast_fitted = kkt_residual(layers, x, labels)
    generic, generic_fitted = kkt_residual(mlp_network(layers), x, labels)
    assert generic == pytest.approx(fast, rel=1e-9)
    torch.testing.assert_close(generic_fitted, fast_fitted, rtol=1e-7, atol=1e-10)
    assert preactivation_scale(mlp_network(layers), x) == pytest.approx(preactivation_scale(layers, x), rel=1e-12)


def test_restarts_on_the_generic_path_are_independent_with_their_own_alpha():
    network = ReLUNetwork(nn.Sequential(nn.Unflatten(1, (1, 28, 28)), SmallCNN()).double())
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 784, dtype=torch.float64, generator=generator)
    lam = torch.rand(2, 6, dtype=torch.float64, generator=generator)
    labels = torch.tensor([1.0, 1, 1, -1, -1, -1])
    batched = stationarity_loss(network, x, lam, labels, torch.tensor([5.0, 50.0], dtype=torch.float64))
    alone = [stationarity_loss(network, x[r : r + 1], lam[r : r + 1], labels, a)[0] for r, a in enumerate([5.0, 50.0])]
    torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-12, atol=0)
    assert batched[0] != batched[1]


def test_a_cnn_that_takes_images_is_audited_from_user_code(digits):
    x, y01, others = digits
    torch.manual_seed(0)
    model = SmallCNN().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    for _ in range(200):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y01).backward()
        optimizer.step()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    dataset = torch.utils.data.TensorDataset(x, y01)
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, shuffle=True)
    result = Auditor(KKTAttack(steps=40, restarts=2), device="cpu").audit(model, loader, nonmembers=others)
    summary = result.summary()
    assert summary.n == 20 and list(result.frame["sample"]) == list(range(20))
    assert result.train_images.shape == (20, 1, 28, 28)
    np.testing.assert_allclose(result.train_images[:, 0], x[:, 0].numpy())  # the user's order, their pixels
    assert (result.frame["margin"] > 0).mean() == pytest.approx(summary.train_accuracy)
    assert 0 < summary.premise["victim_kkt_residual"] < 1
    assert summary.verdict != "conclusive"  # 40 steps: never an all-clear
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    flat = x.reshape(len(x), -1)
    with pytest.raises(UnsupportedModelError, match="takes images"):
        Auditor(KKTAttack(steps=5, restarts=1), device="cpu").audit(model, (flat, y01), nonmembers=others)
    shaped = Auditor(KKTAttack(steps=5, restarts=1), device="cpu").audit(
        model, (flat, y01), nonmembers=others.reshape(len(others), -1), image_shape=(28, 28)
    )
    assert shaped.summary().n == 20


def test_the_owners_attack_runs_on_a_cnn(digits):
    x, y01, others = digits
    torch.manual_seed(0)
    model = SmallCNN().double()
    init = {name: t.clone() for name, t in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(50):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y01).backward()
        optimizer.step()
    result = Auditor(OwnerAttack(steps=20, restarts=1), device="cpu").audit(
        model, (x, y01), nonmembers=others, init=init
    )
    residual = result.summary().premise["victim_linearisation_residual"]
    assert 0 <= residual < 1 and result.summary().verdict != "conclusive"


def test_a_cnn_trained_with_opacus_by_user_code_gets_its_epsilon_ceiling_and_verdict(digits):
    from opacus import PrivacyEngine

    x, y01, others = digits
    torch.manual_seed(0)
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.float(), y01.float()), batch_size=5)
    engine = PrivacyEngine()
    private, optimizer, private_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0
    )
    for _ in range(3):
        for batch_x, batch_y in private_loader:
            optimizer.zero_grad()
            if len(batch_x):
                F.binary_cross_entropy_with_logits(private(batch_x).squeeze(-1), batch_y).backward()
                optimizer.step()
    auditor = Auditor(KKTAttack(steps=30, restarts=1, search="off"), device="cpu")
    result = auditor.audit(private, train=private_loader, nonmembers=others.float(), privacy=engine, delta=1e-5)
    assert result.privacy.epsilon == pytest.approx(engine.get_epsilon(1e-5), rel=1e-6)
    assert math.isfinite(result.privacy.epsilon) and result.privacy.epsilon > 0
    assert result.bounds is not None and 0 < result.bounds.identified.bound <= 1
    assert result.summary().verdict in ("weak", "inconclusive")
    assert any("not one pass" in note for note in result.data_notes)  # Opacus's Poisson loader: read directly
    assert list(result.frame["sample"]) == list(range(20))


def test_cnn_victims_are_built_seeded_and_sized_by_arithmetic():
    conv = [ConvLayer(4, 5, 2, "max"), ConvLayer(8, 3, 1)]
    model = build_cnn((28, 28), conv, [16], seed=3)
    again = build_cnn((28, 28), conv, [16], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    zeros = torch.zeros(2, 784)
    assert model(zeros).shape == (2, 1)
    network = ReLUNetwork(model)
    widths, parameters = victim_size_of(conv, [16])
    recorded = [z[0].numel() for z in network.preactivations(zeros)]
    assert recorded == [widths[1] * 4, widths[2], 16]  # ReLUs see the convolution before its 2x2 pooling
    assert parameters >= sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=r"conv.1.kernel: 9 exceeds the 6x6 image"):
        build_cnn((28, 28), [ConvLayer(4, 5, 2, "max"), ConvLayer(8, 9)], [16])


def victim_size_of(conv, hidden):
    from auditkit.victims.models import cnn_widths

    return cnn_widths((1, 28, 28), conv, hidden, 1)


@pytest.mark.parametrize(
    "victim, expected",
    [
        ({"arch": "cnn"}, "victim.arch 'cnn' needs at least one layer in victim.conv"),
        ({"conv": [{"channels": 4}]}, "victim.conv: set victim.arch to 'cnn'"),
        ({"arch": "cnn", "conv": [{"channels": 0}]}, "victim.conv.0.channels"),
        ({"arch": "cnn", "conv": [{"channels": 4, "pool": "min"}]}, "victim.conv.0.pool"),
        ({"arch": "cnn", "conv": [{"channels": 4, "kernel": 15}, {"channels": 4, "kernel": 15}]}, "conv.1.kernel"),
    ],
)
def test_bad_cnn_settings_are_named(tmp_path, victim, expected):
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"extends": "mnist_quick", "name": "bad", "victim": victim}))
    with pytest.raises(AuditkitError, match=expected.replace("(", r"\(")):
        plan_victims(load_scenario_file(str(path)))


def test_the_shipped_cnn_scenario_builds_the_network_it_plans():
    scenario = load_scenario("mnist_cnn")
    from auditkit.data.datasets import load_data

    data = load_data(scenario.data, scenario.seed)
    model = untrained_victim(scenario, data)
    widths, parameters = victim_size(scenario, data)
    assert parameters >= sum(p.numel() for p in model.parameters()) > 0
    assert any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert KKTAttack().check(model).inputs == widths[0] == 784
    assert [job.name for job in plan_victims(scenario)] == ["none", "none.span"]  # the span attack beside


def _save_cnn(folder, digits):
    x, y01, others = digits
    torch.manual_seed(0)
    model = SmallCNN(channels=3)
    torch.save(model.state_dict(), folder / "cnn.pt")
    np.savez(
        folder / "data.npz",
        train_x=x.reshape(len(x), -1).numpy(),
        train_y=y01.numpy(),
        nonmember_x=others.reshape(len(others), -1).numpy(),
        image_shape=np.array([28, 28]),
    )
    (folder / "nets.py").write_text(NETS)


def test_a_saved_cnn_is_audited_with_its_class_from_the_command_line(tmp_path, digits, monkeypatch):
    _save_cnn(tmp_path, digits)
    monkeypatch.chdir(tmp_path)
    for out, arch in (("out", "nets:SmallCNN"), ("by_file", "nets.py:SmallCNN")):
        arguments = ["audit", "cnn.pt", "--data", "data.npz", "--out", out, "--steps", "5", "--device", "cpu"]
        result = CliRunner().invoke(main, [*arguments, "--arch", arch, "--arch-arg", "channels=3"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / out / "report.html").exists() and (tmp_path / out / "cnn" / "per_sample.csv").exists()
        assert "nets" in (tmp_path / out / "summary.json").read_text()  # the class is recorded


@pytest.mark.parametrize(
    "arch, expected",
    [
        ([], "'conv.weight' with shape (3, 1, 5, 5) is not a Linear weight"),
        (["--arch", "nets:Missing"], "--arch: 'nets' has no torch.nn.Module class 'Missing'"),
        (["--arch", "nowhere:SmallCNN"], "--arch: cannot import 'nowhere'"),
        (["--arch", "SmallCNN"], "is not module:Class"),
        (["--arch", "nets:SmallCNN"], "'conv.weight' is (3, 1, 5, 5) but SmallCNN's is (4, 1, 5, 5)"),
        (["--arch", "nets:SmallCNN", "--arch-arg", "width=3"], "--arch: SmallCNN(**{'width': 3}) failed"),
        (["--arch", "nets:SmallCNN", "--arch-arg", "3"], "--arch-arg '3': expected KEY=VALUE"),
        (["--arch-arg", "channels=3"], "--arch-arg: give --arch module:Class"),
    ],
)
def test_bad_architectures_get_one_line(tmp_path, digits, monkeypatch, arch, expected):
    _save_cnn(tmp_path, digits)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["audit", "cnn.pt", "--data", "data.npz", "--out", "out", *arch])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "out").exists()


class WithGELU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 5)
        self.act = nn.GELU()
        self.fc = nn.Linear(2 * 24 * 24, 1)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_a_cnn_with_an_unsupported_layer_is_named_with_its_step(digits):
    x, y01, others = digits
    with pytest.raises(UnsupportedModelError, match=r"layer 'act' \(GELU, step 3\)"):
        Auditor(KKTAttack(steps=5), device="cpu").audit(WithGELU(), (x, y01), nonmembers=others)


def test_conv_settings_on_an_mlp_are_refused_before_any_work():
    with pytest.raises(ConfigError):
        load_scenario("mnist_quick", {"victim": {"conv": [{"channels": 4}]}})
