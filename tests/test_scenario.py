"""Scenario files: composition, presets, and one-line errors that name the field."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from auditkit.attacks.registry import attack_class, attack_names
from auditkit.cli import main
from auditkit.config.loading import load_scenario
from auditkit.data.datasets import load_data
from auditkit.errors import ScenarioError
from auditkit.running.victims import plan_defenses

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT  # scenarios/, attacks/, defenses/ at the top of the repository


@pytest.fixture
def project(tmp_path):
    for folder in ("attacks", "defenses", "scenarios"):
        shutil.copytree(PRESETS / folder, tmp_path / folder)
    return tmp_path


def _write(project: Path, text: str) -> Path:
    path = project / "scenarios" / "case.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted((PRESETS / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_validate_and_build_their_data(path, cifar_dir, monkeypatch):
    monkeypatch.setenv("AUDITKIT_DATA", str(cifar_dir))  # small files in the official CIFAR-10 format
    scenario = load_scenario(path)
    data = load_data(scenario.data, scenario.seed)
    classes = len(scenario.data.classes or range(10)) if scenario.data.task == "multiclass" else 2
    assert len(data.train_x) == classes * scenario.data.n_per_class


def test_mnist_dp_is_a_noise_curve_under_one_budget():
    """The headline scenario: at least five DP-SGD victims, clipping alone first, noise rising, every one
    with the same data, batch, clip norm and epochs, and every budget resolvable before anything trains."""
    scenario = load_scenario("mnist_dp", {"device": "cpu"})
    plans = plan_defenses(scenario, 2 * scenario.data.n_per_class)
    sigmas = [plan.noise_multiplier for plan in plans.values()]
    epsilons = [plan.epsilon for plan in plans.values()]
    assert len(plans) >= 5 and sigmas[0] == 0 and sigmas == sorted(sigmas) and len(set(sigmas)) == len(sigmas)
    assert epsilons[0] == float("inf") and epsilons[1:] == sorted(epsilons[1:], reverse=True) and epsilons[-1] <= 10
    assert len({(plan.steps, plan.batch_size, plan.max_grad_norm) for plan in plans.values()}) == 1
    assert [d.kind for d in scenario.defenses].count("none") == 1


def test_mnist_paper_cpu_has_the_papers_size_and_a_homogeneous_net():
    """The paper's 500 digits (250 per parity class) and 784-1000-1000-1, bias-free: the attack's premise; the
    attack's restarts x steps within the 15,000 candidate-steps (m = 1,000) that fit 30 minutes of a 2-core CPU."""
    scenario = load_scenario("mnist_paper_cpu")
    paper = load_scenario("mnist_paper")
    assert (scenario.data.n_per_class, scenario.victim.hidden) == (paper.data.n_per_class, paper.victim.hidden)
    assert scenario.victim.bias == "none"
    assert scenario.attack.restarts * scenario.attack.steps <= 15_000 and scenario.attack.candidates_per_sample == 2


@pytest.mark.parametrize("path", sorted((PRESETS / "attacks").glob("*.yaml")), ids=lambda p: p.stem)
def test_attack_presets_state_only_what_differs_from_the_defaults(path):
    preset = yaml.safe_load(path.read_text())
    assert isinstance(preset, dict) and preset.get("name") in attack_names()  # which attack: stated, not a setting
    config = attack_class(preset.pop("name")).config_type
    defaults = config().model_dump()
    restated = [
        key for key, value in preset.items() if config.validated({key: value}).model_dump()[key] == defaults[key]
    ]
    assert not restated, f"{path.name} restates defaults: {restated}"


def test_an_empty_scenario_file_is_an_error(project):
    with pytest.raises(ScenarioError, match="case.yaml: the file is empty"):
        load_scenario(_write(project, "# nothing here\n"))


def test_extends_and_presets_compose(project):
    path = _write(
        project, "extends: mnist_quick\nname: case\nvictim: {bias: all}\nattack: {preset: kkt_quick, steps: 7}\n"
    )
    scenario = load_scenario(path)
    assert scenario.victim.bias == "all"
    assert scenario.victim.hidden == [500, 500]  # inherited
    assert scenario.attack.steps == 7 and scenario.attack.lr_x == 0.01  # preset + override
    assert [d.name for d in scenario.defenses] == ["none"]


def test_attack_fields_amend_the_inherited_preset(project):
    amended = load_scenario(_write(project, "extends: mnist_quick\nattack: {steps: 7}\n"))
    preset = load_scenario(project / "scenarios" / "mnist_quick.yaml")
    assert amended.attack.steps == 7
    assert amended.attack.model_dump(exclude={"steps"}) == preset.attack.model_dump(exclude={"steps"})
    overridden = load_scenario(project / "scenarios" / "mnist_quick.yaml", {"attack": {"restarts": 3}})
    assert overridden.attack.restarts == 3 and overridden.attack.lambda_weight == preset.attack.lambda_weight


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: c\ndefenses: [none]\ncolour: red\n", "colour: unknown field"),
        ("name: c\ndefenses: [none]\ndevice: tpu\n", "device: Input should be 'auto', 'cpu' or 'cuda'"),
        ("name: c\ndefenses: [none]\ndata: {n_per_class: many}\n", "data.n_per_class: Input should be a valid integer"),
        ("name: c\ndefenses: [none]\ndata: {n_per_class: 0}\n", "data.n_per_class: Input should be greater than 0"),
        (
            "name: c\ndefenses: [none]\nattack: kkt_nope\n",
            "attack: unknown attack preset 'kkt_nope'; allowed: kkt_paper, kkt_quick",
        ),
        ("name: c\ndefenses: [none, dp_eps0]\n", "defenses.1: unknown defense preset 'dp_eps0'; allowed:"),
        ("name: c\ndefenses: [none]\nvictim: {bias: some}\n", "victim.bias: Input should be 'none', 'first' or 'all'"),
        ("name: c\ndefenses: [none]\ndata: {task: digits, negative: [3]}\n", "data: task 'digits' needs both"),
        (
            "name: c\ndefenses: [none]\nattack: {preset: kkt_quick, alpha: -1}\n",
            "attack.alpha: Input should be greater than 0",
        ),
        ("name: c\ndefenses: [{name: x, kind: recipe, training: {weight_dacay: 1}}]\n", "defenses.0.training"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_schema_errors_name_the_field(project, text, expected):
    with pytest.raises(ScenarioError) as error:
        load_scenario(_write(project, text))
    assert expected in str(error.value)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(project):
    path = _write(project, "extends: mnist_quick\ndata: {n_per_class: 4000}\n")
    result = _cli("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "data.n_per_class + data.test_per_class = 4250 exceeds the 2500 images" in result.stderr

    missing = _cli("run", str(project / "scenarios" / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_missing_mnist_files_say_where(project):
    path = _write(project, f"extends: mnist_quick\ndata: {{path: {project / 'mnist'}}}\n")
    result = _cli("validate", str(path))
    assert result.returncode == 2
    assert f"missing MNIST file {project / 'mnist' / 'train-images-idx3-ubyte'}" in result.stderr


def test_only_user_errors_are_one_line(project, monkeypatch):
    """A user error exits 2 with one line; a bug in auditkit (here a ValueError) keeps its traceback."""
    path = _write(project, "extends: mnist_quick\n")
    user = CliRunner().invoke(main, ["validate", str(project / "scenarios" / "nope.yaml")])
    assert user.exit_code == 2 and user.output.count("\n") == 1 and "nope.yaml: file not found" in user.output

    def bug(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr("auditkit.running.jobs.load_data", bug)
    internal = CliRunner().invoke(main, ["validate", str(path)])
    assert internal.exit_code != 2
    assert isinstance(internal.exception, ValueError) and "an internal bug" in str(internal.exception)
