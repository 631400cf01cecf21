"""The owner's attack: what minibatch SGD without weight decay added to the initial weights, explained by the
training samples' gradients, where the KKT premise fails; and every way its initial weights can be wrong."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import knowledge

from auditkit import Auditor, KKTAttack, RunResult
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.attacks.owner.attack import OwnerAttack
from auditkit.auditing.inputs import initial_model
from auditkit.cli import main
from auditkit.data.tasks import PARITY, binary_task
from auditkit.errors import ConfigError, DataError, UnsupportedModelError
from auditkit.victims import build_mlp
from auditkit.victims.training import train_mlp

OWNER_FLOOR = 16  # measured 19 and 19 of 20 (docstring below); a regression that loses 4 fails
SCENARIO_FLOOR = 16  # the shipped scenario, small: measured 19 of 20 (below)


@pytest.fixture(scope="module")
def textbook_victim(mnist):
    """20 MNIST parity digits, 784-200-200-1, minibatch SGD + momentum without weight decay (as people train),
    with the initial weights it started from."""
    data = binary_task(*mnist, *PARITY, n_per_class=10, test_per_class=100, seed=0, image_shape=(28, 28), name="mnist")
    model = build_mlp(784, [200, 200], "none", seed=0, dtype=torch.float64)
    initial = copy.deepcopy(model)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    log = train_mlp(model, x, y, lr=0.01, epochs=300, optimizer="sgd", momentum=0.9, batch_size=10)
    assert log.train_accuracy == 1.0
    return model, initial, data


@pytest.mark.parametrize("gradients_at", ["average", "final"])
def test_the_linearisation_holds_at_the_training_set_only_where_the_kkt_premise_fails(textbook_victim, gradients_at):
    """Measured: KKT residual 0.95 at the truth; linearisation residual (average) 0.24 at the truth, 0.93 at
    non-members; (final) 0.27 and 0.93; (init, the lazy regime, which this small-init net is not in) 0.80."""
    model, initial, data = textbook_victim
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    objective = OwnerAttack(gradients_at=gradients_at).objective(model, knowledge(data, initial=initial))
    at_truth, fitted = kkt_residual(objective, x, y)
    at_non_members, _ = kkt_residual(objective, torch.as_tensor(data.pool_x[: len(x)]), y)
    assert kkt_residual(KKTAttack().objective(model, knowledge(data)), x, y)[0] > 0.9
    assert at_truth < 0.3 and at_non_members > 0.7
    assert (fitted >= 0).all()


@pytest.mark.slow
def test_the_owner_reconstructs_a_textbook_victim_the_kkt_attack_cannot_speak_about(textbook_victim):
    """Measured (1 restart, 1,500 steps): 19 and 19 of 20 identified at attack seeds 0 and 1 (p 6e-48, 2e-49),
    premise 0.24, converged; the KKT attack: inconclusive (its premise fails)."""
    model, initial, data = textbook_victim
    attack = OwnerAttack(steps=1500, restarts=1, search="off")
    results = [Auditor(attack, device="cpu", seed=seed).audit(model, data, init=initial) for seed in (0, 1)]
    for result in results:
        summary = result.summary()
        assert summary.attack == "owner" and summary.verdict in ("conclusive", "weak"), summary.finding
        assert summary.identified >= OWNER_FLOOR and summary.p_value < 1e-3
        assert summary.premise["victim_linearisation_residual"] < 0.3
    kkt = Auditor(KKTAttack(steps=300, restarts=1), device="cpu").audit(model, data).summary()
    assert kkt.verdict == "inconclusive" and "far from a KKT point" in kkt.finding


def test_the_owner_attack_needs_the_initial_weights(textbook_victim):
    model, _, data = textbook_victim
    with pytest.raises(ConfigError, match="init: missing; the owner attack explains the trained weights"):
        Auditor(OwnerAttack(steps=1)).audit(model, data)


def test_initial_weights_are_checked_against_the_model(textbook_victim):
    model, initial, _ = textbook_victim
    state = initial.state_dict()
    opacus = {f"_module.{key}": value for key, value in state.items()}  # a wrapped module's names
    assert all(torch.equal(a, b) for a, b in zip(initial_model(model, opacus).parameters(), initial.parameters()))
    with pytest.raises(UnsupportedModelError, match=r"init: tensor '2.weight' is \(200, 100\) but the model's is"):
        initial_model(model, {**state, "2.weight": torch.zeros(200, 100, dtype=torch.float64)})
    with pytest.raises(UnsupportedModelError, match="init: the initial weights lack the model's tensor '4.weight'"):
        initial_model(model, {k: v for k, v in state.items() if k != "4.weight"})
    other = build_mlp(784, [200, 200], "all", seed=0)
    with pytest.raises(UnsupportedModelError, match="init: the model has no tensor '0.bias'"):
        initial_model(model, other)
    nan = {**state, "0.weight": state["0.weight"].clone().fill_(float("nan"))}
    with pytest.raises(DataError, match="init: tensor '0.weight' holds NaN"):
        initial_model(model, nan)
    with pytest.raises(DataError, match="init: equals the trained weights"):
        initial_model(model, model)
    with pytest.raises(DataError, match="init: expected the initial weights as a module or a state_dict, got str"):
        initial_model(model, "init.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), copy.deepcopy(model).parameters()))


def test_bad_initial_weights_from_the_command_line_get_one_line_and_exit_code_2(textbook_victim, tmp_path):
    model, initial, data = textbook_victim
    torch.save(model.state_dict(), tmp_path / "model.pt")
    np.savez(tmp_path / "train.npz", train_x=data.train_x, train_y=data.train_y, mean=data.mean)
    torch.save(build_mlp(784, [100, 200], "none", seed=0).state_dict(), tmp_path / "other.pt")
    arguments = ["audit", str(tmp_path / "model.pt"), "--data", str(tmp_path / "train.npz"), "--device", "cpu"]
    cases = {
        "other.pt": "other.pt: tensor '0.weight' is (100, 784) but the model's is (200, 784)",
        "model.pt": "model.pt: equals the trained weights",
    }
    for init, message in cases.items():
        out = tmp_path / f"out-{init}"
        result = CliRunner().invoke(main, [*arguments, "--init", str(tmp_path / init), "--out", str(out)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert not out.exists()
    missing = CliRunner().invoke(main, [*arguments, "--attack", "owner", "--out", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "--init: missing; the owner attack" in missing.output
    torch.save(initial.state_dict(), tmp_path / "init.pt")
    good = CliRunner().invoke(main, [*arguments, "--init", str(tmp_path / "init.pt"), "--steps", "20", "--quiet",
                                     "--out", str(tmp_path / "good")])  # fmt: skip
    assert good.exit_code == 0, good.output
    audited = RunResult.load(tmp_path / "good")
    assert audited.summary()[0].attack == "owner" and audited.facts.config["init"].endswith("init.pt")


def test_a_scenarios_initial_weights_are_regenerated_from_its_seed_alone():
    """What training started from is rebuilt from the seed whatever the global random state has done since."""
    from auditkit import load_scenario
    from auditkit.data.datasets import load_data
    from auditkit.running.victims import untrained_victim

    scenario = load_scenario("mnist_owner", {"data": {"n_per_class": 2, "test_per_class": 2}})
    data = load_data(scenario.data, scenario.seed)
    torch.manual_seed(123)
    first = untrained_victim(scenario, data)
    torch.rand(1000)
    again = untrained_victim(scenario, data)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    points = scenario.grid_points()
    assert [type(p.scenario.attack).__name__ for p in points] == ["KKTConfig", "OwnerConfig"]
    assert points[0].scenario.attack.steps == points[1].scenario.attack.steps  # the KKT settings carry over


@pytest.mark.slow
def test_the_shipped_owner_scenario_reports_both_attacks_side_by_side(tmp_path):
    """mnist_owner at 20 digits, 784-200-200-1, one restart of 1,500 steps. Measured (seed 0): the owner's
    attack 19 of 20 (4 non-members, p 1e-48, premise 0.26, conclusive); the KKT attack 2, inconclusive."""
    from auditkit import load_scenario, run_scenario

    small = {
        "data": {"n_per_class": 10, "test_per_class": 100},
        "victim": {"hidden": [200, 200]},
        "attack": {"steps": 1500, "restarts": 1, "search": "off"},
    }
    run = run_scenario(load_scenario("mnist_owner", small), tmp_path / "run")
    kkt, owner = (run[f"none.name-{name}"].summary() for name in ("kkt", "owner"))
    assert kkt.attack == "kkt" and kkt.verdict == "inconclusive"
    assert owner.attack == "owner" and owner.verdict == "conclusive" and owner.identified >= SCENARIO_FLOOR
    assert owner.p_value < 1e-6 and owner.identified > kkt.identified
    saved = RunResult.load(tmp_path / "run")["none.name-owner"]
    assert type(saved.attack).__name__ == "OwnerFacts"
    assert saved.attack.to_dict() == run["none.name-owner"].attack.to_dict()


def test_initial_weights_of_a_model_with_named_layers_load_from_the_command_line(textbook_victim, tmp_path):
    model, initial, data = textbook_victim
    names = {"0": "fc1", "2": "fc2", "4": "out"}

    def renamed(state: dict) -> dict:  # '0.weight' -> 'fc1.weight'; the weights without biases get zero biases
        layers = {}
        for name, tensor in state.items():
            layer, kind = name.split(".")
            layers[f"{names[layer]}.{kind}"] = tensor
            layers.setdefault(f"{names[layer]}.bias", torch.zeros(tensor.shape[0], dtype=tensor.dtype))
        return layers

    torch.save(renamed(model.state_dict()), tmp_path / "model.pt")
    torch.save(renamed(initial.state_dict()), tmp_path / "init.pt")
    np.savez(tmp_path / "train.npz", train_x=data.train_x, train_y=data.train_y, mean=data.mean)
    arguments = ["audit", str(tmp_path / "model.pt"), "--data", str(tmp_path / "train.npz"), "--device", "cpu"]
    result = CliRunner().invoke(main, [*arguments, "--init", str(tmp_path / "init.pt"), "--steps", "20",
                                       "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "audited as a ReLU network" in result.output.splitlines()[0]  # the assumed activation, first
    audited = RunResult.load(tmp_path / "out")["model"]
    assert audited.summary().attack == "owner" and any("audited as a ReLU network" in n for n in audited.data_notes)
