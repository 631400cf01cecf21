"""Malformed input of every kind a user (or a hostile file) brings: each gets exit code 2 and one line
naming the file or field, never a traceback, never a write outside --out, never a finished file lost.

Driven in-process through click's CliRunner (and the Python API), so the module stays fast.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from auditkit import AuditkitError, Auditor, KKTAttack, load_scenario, run_scenario
from auditkit.cli import main
from auditkit.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT  # scenarios/, attacks/, defenses/ at the top of the repository
BASE = """name: base
device: cpu
data: {dataset: toy_colors, n_per_class: 5, test_per_class: 20}
victim: {hidden: [16], training: {epochs: 50}}
defenses: [none]
attack: {steps: 10, restarts: 1, log_every: 5}
"""
ALONE = BASE.replace("defenses: [none]", "defenses: [{name: none}]")  # needs no preset folder


def _dp(settings: str) -> str:
    return f"extends: base\ndefenses: [{{name: d, kind: dp_sgd, dp: {{{settings}}}}}]\n"


SCENARIOS = [
    # files that are not a scenario mapping
    ("", "case.yaml: the file is empty"),
    ("# only a comment\n", "case.yaml: the file is empty"),
    ("- a\n- b\n", "case.yaml: expected a mapping of fields, got list"),
    ("hello\n", "case.yaml: expected a mapping of fields, got str"),
    ("name: [unclosed\n", "case.yaml: not valid YAML"),
    ("a:\n\t- b\n", "case.yaml: not valid YAML"),
    ("extends: base\nseed: 1\nseed: 2\n", "duplicate key(s) seed"),
    ("extends: base\nattack: {steps: 1, steps: 2}\n", "duplicate key(s) steps"),
    ("&a [*a]\n", "case.yaml:"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "case.yaml: not valid YAML"),
    # extends
    ("extends: 5\n", "extends: expected the name or path of a scenario, got 5"),
    ("extends: [base]\n", "extends: expected the name or path of a scenario"),
    ("extends: ''\n", "extends: expected the name or path of a scenario"),
    ("extends: nowhere\n", "extends: scenario 'nowhere' not found"),
    ("extends: case\n", "extends: 'case' is circular"),
    # names that would become paths
    ("extends: base\nname: ../../x\n", "name: String should match pattern"),
    ("extends: base\nname: a/b\n", "name: String should match pattern"),
    ("extends: base\nname: ''\n", "name: String should match pattern"),
    ("extends: base\nname: .hidden\n", "name: String should match pattern"),
    ("extends: base\nname: 123\n", "name: Input should be a valid string"),
    ("extends: base\nname: " + "x" * 80 + "\n", "name: String should match pattern"),
    ("extends: base\ndefenses: [{name: ../escape, kind: none}]\n", "defenses.0.name: String should match pattern"),
    ("extends: base\ndefenses: [{name: /abs, kind: none}]\n", "defenses.0.name: String should match pattern"),
    ("extends: base\ndefenses: [../none]\n", "defenses.0: preset name '../none' must match"),
    ("extends: base\ndefenses: [{preset: ../../none}]\n", "defenses.0.preset: preset name '../../none' must match"),
    ("extends: base\nattack: ../attacks/kkt_quick\n", "attack: preset name '../attacks/kkt_quick' must match"),
    # defenses
    ("extends: base\ndefenses: none\n", "defenses: expected a list of preset names or mappings"),
    ("extends: base\ndefenses: []\n", "defenses: List should have at least 1 item"),
    ("extends: base\ndefenses: [none, none]\n", "defenses: defense names must be unique"),
    ("extends: base\ndefenses: [42]\n", "defenses.0: expected a preset name or a mapping, got 42"),
    ("extends: base\ndefenses: [dp_eps0]\n", "defenses.0: unknown defense preset 'dp_eps0'"),
    ("extends: base\ndefenses: [{name: x, kind: recipe, training: {weight_dacay: 1}}]\n", "defenses.0.training"),
    ("extends: base\ndefenses: [{name: x, kind: dp_sgd}]\n", "defenses.0: kind 'dp_sgd' needs a 'dp' mapping"),
    ("extends: base\ndefenses: [{name: x, dp: {target_epsilon: 1}}]\n", "defenses.0: kind 'dp_sgd' needs a 'dp'"),
    (
        "extends: base\ndefenses: [{name: x, kind: shield}]\n",
        "defenses.0.kind: unknown defense kind 'shield'; registered",
    ),
    # the attack
    ("extends: base\nattack: kkt_nope\n", "attack: unknown attack preset 'kkt_nope'; allowed: kkt_paper, kkt_quick"),
    ("extends: base\nattack: 5\n", "attack: expected a preset name or a mapping, got 5"),
    ("extends: base\nattack: {preset: nope}\n", "attack.preset: unknown attack preset 'nope'"),
    ("extends: base\nattack: {steps: -1}\n", "attack.steps: Input should be greater than or equal to 0"),
    ("extends: base\nattack: {steps: true}\n", "attack.steps: Input should be a valid integer"),
    ("extends: base\nattack: {steps: '100'}\n", "attack.steps: Input should be a valid integer"),
    ("extends: base\nattack: {steps: 1.5}\n", "attack.steps: Input should be a valid integer"),
    ("extends: base\nattack: {steps: 1e12}\n", "attack.steps: Input should be a valid integer"),
    ("extends: base\nattack: {restarts: 0}\n", "attack.restarts: Input should be greater than 0"),
    ("extends: base\nattack: {restarts: 100000}\n", "attack.restarts: Input should be less than or equal to 1024"),
    ("extends: base\nattack: {optimizer: lbfgs}\n", "attack.optimizer: Input should be 'adam' or 'sgd'"),
    ("extends: base\nattack: {lr_x: .nan}\n", "attack.lr_x: Input should be a finite number"),
    ("extends: base\nattack: {lr_x: .inf}\n", "attack.lr_x: Input should be a finite number"),
    ("extends: base\nattack: {lr_x: 0}\n", "attack.lr_x: Input should be greater than 0"),
    ("extends: base\nattack: {alpha: -1}\n", "attack.alpha: Input should be greater than 0"),
    (
        "extends: base\nattack: {search_ranges: {alpha: [1]}}\n",
        "attack.search_ranges.alpha: List should have at least 2",
    ),
    ("extends: base\nattack: {search_ranges: {alpha: [5, 1]}}\n", "attack.search_ranges: alpha: expected 0 < low"),
    ("extends: base\nattack: {search_ranges: {beta: [1, 2]}}\n", "attack.search_ranges.beta"),
    ("extends: base\nattack: {search_ranges: [1, 2]}\n", "attack.search_ranges: Input should be a valid dictionary"),
    ("extends: base\nattack: {select: best}\n", "attack.select: Input should be 'kkt_residual', 'kkt_loss'"),
    ("extends: base\nattack: {early_stop_keep: 0}\n", "attack.early_stop_keep: Input should be greater than 0"),
    ("extends: base\nattack: {early_stop_keep: 2}\n", "attack.early_stop_keep: Input should be less than or equal"),
    ("extends: base\nattack: {momentum: 1}\n", "attack.momentum: Input should be less than 1"),
    ("extends: base\nattack: {prior: none}\n", "attack.prior: Input should be 'tight' or 'box'"),
    ("extends: base\nattack: {stpes: 10}\n", "attack.stpes: unknown field"),
    ("extends: base\nattack: {candidates_per_sample: 100000}\n", "attack.candidates_per_sample: Input should be less"),
    ("extends: base\nattack: {alpha_relative: 'yes'}\n", "attack.alpha_relative: Input should be a valid boolean"),
    # data
    (
        "extends: base\ndata: {dataset: cifar}\n",
        "data.dataset: Input should be 'mnist', 'mnist_features', 'toy_colors' or 'cifar10'",
    ),
    (
        "extends: base\ndata: {dataset: cifar10}\n",
        "task 'parity' is not one dataset 'cifar10' takes (it takes 'vehicles'",
    ),
    ("extends: base\ndata: {task: vehicles}\n", "data: task 'vehicles' is not one dataset 'toy_colors' takes"),
    (
        "extends: base\ndata: {dataset: mnist, task: multiclass, classes: [3]}\n",
        "data: 'classes' needs at least two distinct",
    ),
    ("extends: base\ndata: {classes: [1, 2]}\n", "data: 'classes' is for task 'multiclass'"),
    (
        "extends: base\ndata: {dataset: mnist, task: multiclass}\n",
        "victim.training.loss: task 'multiclass' trains with 'ce'",
    ),
    ("extends: base\ndata: {n_per_class: 0}\n", "data.n_per_class: Input should be greater than 0"),
    ("extends: base\ndata: {n_per_class: -3}\n", "data.n_per_class: Input should be greater than 0"),
    ("extends: base\ndata: {n_per_class: true}\n", "data.n_per_class: Input should be a valid integer"),
    ("extends: base\ndata: {n_per_class: 1e9}\n", "data.n_per_class: Input should be a valid integer"),
    ("extends: base\ndata: {n_per_class: many}\n", "data.n_per_class: Input should be a valid integer"),
    ("extends: base\ndata: {dataset: mnist, task: digits, negative: [3]}\n", "data: task 'digits' needs both"),
    ("extends: base\ndata: {dataset: mnist, task: digits, negative: [3], positive: [3]}\n", "lists overlap"),
    ("extends: base\ndata: {dataset: mnist, task: digits, negative: [11], positive: [1]}\n", "between 0 and 9"),
    pytest.param(  # draws from every MNIST image
        "extends: base\ndata: {dataset: mnist, n_per_class: 4000}\n",
        "data.n_per_class + data.test_per_class = 4020",
        marks=pytest.mark.slow,
    ),
    ("extends: base\ndata: {dataset: mnist, path: /nonexistent/mnist}\n", "missing MNIST file /nonexistent/mnist/"),
    ("extends: base\ndata: {noise: -1}\n", "data.noise: Input should be greater than or equal to 0"),
    ("extends: base\ndata: {image_size: 1}\n", "data.image_size: Input should be greater than or equal to 3"),
    ("extends: base\ndata: {image_size: 100000}\n", "data.image_size: Input should be less than or equal"),
    ("extends: base\ndata: [1, 2]\n", "data: Input should be a valid dictionary"),
    # the victim
    ("extends: base\nvictim: {hidden: []}\n", "victim.hidden: List should have at least 1 item"),
    ("extends: base\nvictim: {hidden: [0]}\n", "victim.hidden.0: Input should be greater than 0"),
    ("extends: base\nvictim: {hidden: [-5]}\n", "victim.hidden.0: Input should be greater than 0"),
    ("extends: base\nvictim: {hidden: [1000000000]}\n", "victim.hidden.0: Input should be less than or equal"),
    ("extends: base\nvictim: {hidden: 500}\n", "victim.hidden: Input should be a valid list"),
    ("extends: base\nvictim: {hidden: [true]}\n", "victim.hidden.0: Input should be a valid integer"),
    ("extends: base\nvictim: {bias: yes}\n", "victim.bias: Input should be 'none', 'first' or 'all'"),
    ("extends: base\nvictim: {init_scale: 0}\n", "victim.init_scale: Input should be greater than 0"),
    ("extends: base\nvictim: {training: {epochs: true}}\n", "victim.training.epochs: Input should be a valid integer"),
    ("extends: base\nvictim: {training: {epochs: 0}}\n", "victim.training.epochs: Input should be greater than 0"),
    ("extends: base\nvictim: {training: {lr: -1}}\n", "victim.training.lr: Input should be greater than 0"),
    (
        "extends: base\nvictim: {training: {optimizer: lbfgs}}\n",
        "victim.training.optimizer: Input should be 'gd', 'sgd'",
    ),
    (
        "extends: base\nvictim: {training: {batch_size: 10}}\n",
        "victim.training: optimizer 'gd' is full-batch",
    ),
    (
        "extends: base\nvictim: {training: {batch_size: 0, optimizer: sgd}}\n",
        "victim.training.batch_size: Input should be",
    ),
    (
        "extends: base\nvictim: {training: {optimizer: adam, momentum: 0.9}}\n",
        "victim.training: momentum applies to optimizer 'sgd' only, not 'adam'",
    ),
    (
        "extends: base\nvictim: {training: {optimizer: sgd, momentum: 1}}\n",
        "victim.training.momentum: Input should be less",
    ),
    ("extends: base\nvictim: {training: {schedule: step}}\n", "victim.training.schedule: Input should be 'constant'"),
    (
        "extends: base\nvictim: {training: {schedule: cosine, compile: true}}\n",
        "victim.training: compile: true needs full-batch training with a constant schedule",
    ),
    (
        "extends: base\nvictim: {training: {optimizer: sgd, batch_size: 10}}\n"
        "defenses: [{name: d, kind: recipe, training: {optimizer: gd}}]\n",
        "defenses.0.training over victim.training: optimizer 'gd' is full-batch",
    ),
    ("extends: base\nvictim: {training: {compile: maybe}}\n", "victim.training.compile"),
    ("extends: base\nvictim: {training: {weight_decay: x}}\n", "victim.training.weight_decay: Input should be a valid"),
    ("extends: base\nvictim: {depth: 3}\n", "victim.depth: unknown field"),
    # DP settings
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: -1}}]\n",
        "dp.target_epsilon: Input should be greater than 0",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 1e300}}]\n",
        "dp.target_epsilon: Input should be less than or equal to 10000",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: .inf}}]\n",
        "dp.target_epsilon: Input should be a finite number",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, delta: 1.5}}]\n",
        "dp.delta: Input should be less than 1",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, delta: 0}}]\n",
        "dp.delta: Input should be greater than or equal to",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, delta: 1e-300}}]\n",
        "dp.delta: Input should be greater than or equal to",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, noise_multiplier: 1}}]\n",
        "give exactly one of",
    ),
    (_dp("batch_size: 5"), "give exactly one of"),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, batch_size: 500}}]\n",
        "defenses.0.dp.batch_size: 500 is larger than the 10",
    ),
    pytest.param(  # the accountant's search for a noise that reaches it
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 1.0e-9, batch_size: 5}}]\n",
        "defenses.0.dp.target_epsilon: 1e-09 cannot be reached",
        marks=pytest.mark.slow,
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, accountant: foo}}]\n",
        "dp.accountant: Input should be 'rdp', 'prv' or 'gdp'",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: 8, max_grad_norm: 0}}]\n",
        "dp.max_grad_norm: Input should be greater than 0",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {noise_multiplier: -1}}]\n",
        "dp.noise_multiplier: Input should be greater than or equal to 0",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {noise_multiplier: 1e300}}]\n",
        "dp.noise_multiplier: Input should be less than or equal",
    ),
    (
        "extends: base\ndefenses: [{name: d, kind: dp_sgd, dp: {target_epsilon: true}}]\n",
        "dp.target_epsilon: Input should be a valid number",
    ),
    # the rest of the scenario
    ("extends: base\nseed: -1\n", "seed: Input should be greater than or equal to 0"),
    ("extends: base\nseed: 1.5\n", "seed: Input should be a valid integer"),
    ("extends: base\nseed: 1099511627776\n", "seed: Input should be less than or equal to 4294967295"),
    ("extends: base\ndevice: tpu\n", "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ("extends: base\ndtype: float16\n", "dtype: Input should be 'float32' or 'float64'"),
    ("extends: base\nreport: {ssim_threshold: 1.5}\n", "report.ssim_threshold: Input should be less than 1"),
    ("extends: base\nreport: {grid_size: 0}\n", "report.grid_size: Input should be greater than 0"),
    ("extends: base\ncolour: red\n", "colour: unknown field"),
    ("extends: base\ndescription: [1, 2]\n", "description: Input should be a valid string"),
]


@pytest.fixture
def project(tmp_path):
    for folder in ("attacks", "defenses", "scenarios"):
        shutil.copytree(PRESETS / folder, tmp_path / folder)
    (tmp_path / "scenarios" / "base.yaml").write_text(BASE)
    return tmp_path


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], (text, lines[0])


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("text, expected", SCENARIOS, ids=range(len(SCENARIOS)))
def test_bad_scenarios_get_one_line_naming_the_field(project, text, expected):
    path = project / "scenarios" / "case.yaml"
    path.write_text(text)
    before = _files(project)
    _one_line_error(CliRunner().invoke(main, ["validate", str(path)]), expected)
    out = project / "out"
    _one_line_error(CliRunner().invoke(main, ["run", str(path), "--out", str(out)]), expected)
    written = _files(project) - before
    assert all(out in path.parents for path in written), written  # nothing outside --out


def test_oversized_binary_and_deep_files_are_refused(project):
    scenarios = project / "scenarios"
    (scenarios / "case.yaml").write_bytes(b"seed: 1\n" + b"#" * 2_000_000 + b"\n")
    _one_line_error(CliRunner().invoke(main, ["validate", str(scenarios / "case.yaml")]), "more than the 1000000")
    (scenarios / "case.yaml").write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    _one_line_error(CliRunner().invoke(main, ["validate", str(scenarios / "case.yaml")]), "case.yaml: ")
    for level in range(12):
        (scenarios / f"deep{level}.yaml").write_text(f"extends: deep{level + 1}\n" if level < 11 else BASE)
    _one_line_error(CliRunner().invoke(main, ["validate", str(scenarios / "deep0.yaml")]), "levels of 'extends'")


@pytest.mark.parametrize(
    "preset, text, expected",
    [
        ("defenses/broken.yaml", "- a list\n", "broken.yaml: expected a mapping of fields"),
        ("defenses/broken.yaml", "kind: [unclosed\n", "broken.yaml: not valid YAML"),
        ("defenses/broken.yaml", "kind: none\nkind: recipe\n", "duplicate key(s) kind"),
        ("defenses/broken.yaml", "kind: recipe\ntraining: {lr: true}\n", "defenses/broken.yaml: training"),
        ("attacks/broken.yaml", "stpes: 10\n", "attack.stpes: unknown field"),
        ("attacks/broken.yaml", "steps: [1]\n", "attack.steps: Input should be a valid integer"),
    ],
)
def test_bad_preset_files_are_named(project, preset, text, expected):
    (project / preset).write_text(text)
    kind = "defenses: [broken]" if preset.startswith("defenses") else "attack: broken"
    path = project / "scenarios" / "case.yaml"
    path.write_text(f"extends: base\n{kind}\n")
    _one_line_error(CliRunner().invoke(main, ["validate", str(path)]), expected)


def _idx(magic: bytes, shape: tuple[int, ...], payload: bytes) -> bytes:
    return magic + b"".join(size.to_bytes(4, "big") for size in shape) + payload


@pytest.mark.parametrize(
    "images, expected",
    [
        (b"", "train-images-idx3-ubyte: not an unsigned-byte IDX file"),
        (b"PK\x03\x04 not idx", "not an unsigned-byte IDX file"),
        (_idx(b"\x00\x00\x08\x03", (10, 28, 28), b"\x00" * 100), "header says (10, 28, 28) (7840 bytes) but 100"),
        (_idx(b"\x00\x00\x0d\x03", (1, 28, 28), b"\x00" * 784), "not an unsigned-byte IDX file"),
        (_idx(b"\x00\x00\x08\x02", (1, 784), b"\x00" * 784), "are not MNIST's"),
        (gzip.compress(b"\x00\x00\x08\x03", mtime=0)[:-6], "cannot be read"),  # mtime 0: one test id in every worker
    ],
)
def test_broken_idx_files_are_named(project, images, expected):
    folder = project / "mnist"
    folder.mkdir()
    name = "train-images-idx3-ubyte.gz" if images.startswith(b"\x1f\x8b") else "train-images-idx3-ubyte"
    (folder / name).write_bytes(images)
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx(b"\x00\x00\x08\x01", (1,), b"\x03"))
    path = project / "scenarios" / "case.yaml"
    path.write_text(f"extends: base\ndata: {{dataset: mnist, path: {folder}}}\n")
    _one_line_error(CliRunner().invoke(main, ["validate", str(path)]), expected)


def test_bad_command_line_arguments(project, tmp_path):
    base = str(project / "scenarios" / "base.yaml")
    _one_line_error(CliRunner().invoke(main, ["run", str(project / "nope.yaml")]), "nope.yaml: file not found")
    _one_line_error(CliRunner().invoke(main, ["run", str(project / "scenarios")]), "scenarios: a folder, not a file")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _one_line_error(CliRunner().invoke(main, ["run", base, "--out", str(blocker / "out")]), "output folder", "a_file")
    _one_line_error(CliRunner().invoke(main, ["run", base, "--out", str(blocker)]), "output folder", "a_file")
    _one_line_error(CliRunner().invoke(main, ["run", base, "--seed", "-1", "--out", str(tmp_path / "o")]), "seed:")
    if not torch.cuda.is_available():
        cuda = CliRunner().invoke(main, ["run", base, "--device", "cuda", "--out", str(tmp_path / "o")])
        _one_line_error(cuda, "device: 'cuda' was asked for but no CUDA GPU is available")
    for args in (["run", base, "--device", "tpu"], ["run", base, "--seed", "x"], ["report", str(tmp_path / "nope")]):
        result = CliRunner().invoke(main, args)  # click's own usage errors: exit 2, the argument named
        assert result.exit_code == 2 and "Traceback" not in result.output and "Error:" in result.output


def test_a_read_only_cache_fails_before_any_training(project, tmp_path, monkeypatch):
    blocker = tmp_path / "cache_file"
    blocker.write_text("")
    monkeypatch.setenv("AUDITKIT_CACHE", str(blocker))
    result = CliRunner().invoke(main, ["run", str(project / "scenarios" / "base.yaml"), "--out", str(tmp_path / "o")])
    _one_line_error(result, "victim cache", "not writable")
    assert not (tmp_path / "o" / "none").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run with two victims, copied per test before it is damaged."""
    root = tmp_path_factory.mktemp("finished")
    (root / "base.yaml").write_text(ALONE.replace("[{name: none}]", "[{name: a}, {name: b}]"))
    run_scenario(load_scenario(root / "base.yaml"), root / "out", progress=Progress(enabled=False))
    return root / "out"


def _object_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, candidates=np.array([{"x": 1}], dtype=object), train_images=np.zeros((1, 3, 4, 4)))
    return buffer.getvalue()


def _edit_json(path: Path, change) -> bytes:
    values = json.loads(path.read_text())
    change(values)
    return json.dumps(values).encode()


DAMAGE = [
    ("summary.json", None, "summary.json: not found"),
    ("summary.json", b"", "summary.json: not valid JSON"),
    ("summary.json", b'{"run": {"seed"', "summary.json: not valid JSON"),
    ("summary.json", b"[1, 2]", "summary.json: expected a JSON object, got list"),
    ("summary.json", b"\xff\xfe\x00\x01", "summary.json: not valid JSON"),
    ("summary.json", lambda v: v.pop("victims"), "summary.json: missing or wrong field"),
    ("summary.json", lambda v: v.pop("run"), "summary.json: missing or wrong field"),
    ("summary.json", lambda v: v["victims"][0].update(name="../../etc"), "summary.json: missing or wrong field"),
    ("summary.json", lambda v: v["victims"][0].update(name=5), "summary.json: missing or wrong field"),
    ("summary.json", lambda v: v["victims"][0].update(name="gone"), "gone/result.json: not found"),
    ("summary.json", lambda v: v["run"].pop("versions"), "summary.json: missing or wrong field"),
    ("summary.json", lambda v: v.update(failures=[{"nom": 1}]), "summary.json: missing or wrong field"),
    ("a/result.json", None, "a/result.json: not found"),
    ("a/result.json", b'{"name": "a", "att', "a/result.json: not valid JSON"),
    ("a/result.json", lambda v: v.pop("attack"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v.update(name="../../escaped"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v.update(name="/tmp/escaped"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v["attack"].update(name="nope"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v["attack"].update(restart_scores="high"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v["attack"].pop("final_loss"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v.update(ssim_threshold="high"), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v.update(ssim_threshold=5), "ssim_threshold: expected a number between 0 and 1"),
    ("a/result.json", lambda v: v["attack"].update(restarts="many"), "restarts: expected int, got str"),
    ("a/result.json", lambda v: v["attack"].update(seconds=True), "seconds: expected float, got bool"),
    ("summary.json", lambda v: v["run"].update(seed="abc"), "seed: expected int, got str"),
    ("a/result.json", lambda v: v["victim"].update(training=None), "a/result.json: missing or wrong field"),
    ("a/result.json", lambda v: v.update(name="b"), "a/result.json: changed since the audit wrote it"),
    ("a/SHA256SUMS", None, "a/SHA256SUMS: not found"),
    ("a/SHA256SUMS", b"nonsense\n", "a/SHA256SUMS: not a list of"),
    ("b/per_sample.csv", None, "b/per_sample.csv: not found"),
    ("b/per_sample.csv", b"", "b/per_sample.csv: not a readable CSV"),
    ("b/per_sample.csv", b"sample,label\n0,1\n", "b/per_sample.csv: column 'margin' is missing"),
    ("b/per_sample.csv", b"\x00\x01\x02\xff\xfe", "b/per_sample.csv"),
    ("b/reconstructions.npz", None, "b/reconstructions.npz: not found"),
    ("b/reconstructions.npz", b"not a zip archive", "b/reconstructions.npz: not a readable NPZ archive"),
    ("b/reconstructions.npz", _object_npz(), "b/reconstructions.npz: not a readable NPZ archive"),
]


def _csv_edit(column: str, value) -> bytes:
    def change(path: Path) -> bytes:
        import pandas as pd

        frame = pd.read_csv(path)
        if value is None:
            frame = frame.drop(columns=column)
        else:
            frame[column] = value
        return frame.to_csv(index=False).encode()

    return change


def _npz_edit(change) -> bytes:
    def edit(path: Path) -> bytes:
        arrays = dict(np.load(path))
        change(arrays)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    return edit


NPZ_DAMAGE = [
    (lambda a: a.update(candidate_labels=a["candidate_labels"][:3]), "array 'candidate_labels' has shape (3,)"),
    (lambda a: a.update(candidate_restart=a["candidate_restart"][:, None]), "array 'candidate_restart' has shape"),
    (lambda a: a.update(mean=a["mean"][:5]), "do not share one image shape"),
    (lambda a: a.update(candidates=a["candidates"][:, :, :2]), "do not share one image shape"),
    (lambda a: a.update(train_images=np.full_like(a["train_images"], np.nan)), "hold NaN or infinite values"),
    (lambda a: a.update(candidates=np.full_like(a["candidates"], np.nan)), "hold NaN or infinite values"),
    (lambda a: a.update(nonmember_identified=a["nonmember_identified"][:, None]), "not one flag per non-member"),
    (lambda a: a.update(train_images=a["train_images"][:-1]), "rows, but reconstructions.npz holds"),
    (lambda a: a.update(loss_history=a["loss_history"][:1]), "is not a row per step of history_steps"),
    (lambda a: a.update(history_steps=a["history_steps"][:, None]), "is not a row per step of history_steps"),
]

CSV_DAMAGE = [
    ("ssim", None, "column 'ssim' is missing"),
    ("identified", "maybe", "column 'identified' has "),
    ("label", 0.5, "column 'label' has float64 values"),
    ("candidate", 10**6, "column 'candidate' points outside"),
    ("candidate", -1, "column 'candidate' points outside"),
]


def _damage_cases():
    cases = [(name, content, expected) for name, content, expected in DAMAGE]
    cases += [("a/per_sample.csv", _csv_edit(column, value), expected) for column, value, expected in CSV_DAMAGE]
    cases += [("a/reconstructions.npz", _npz_edit(change), expected) for change, expected in NPZ_DAMAGE]
    return cases


@pytest.mark.parametrize("name, content, expected", _damage_cases(), ids=range(len(_damage_cases())))
def test_report_on_a_damaged_run_names_the_file(finished_run, tmp_path, name, content, expected):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    target = out / name
    if content is None:
        target.unlink()
    elif callable(content):
        target.write_bytes(content(target) if name.endswith((".csv", ".npz")) else _edit_json(target, content))
    else:
        target.write_bytes(content)
    before = {path: path.read_bytes() for path in _files(out)}
    _one_line_error(CliRunner().invoke(main, ["report", str(out)]), expected)
    assert {path: path.read_bytes() for path in _files(out)} == before  # nothing lost or half-rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing written beside it (a name read from a file)


def test_report_of_the_intact_run_works(finished_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda out: ((out / "report.html").unlink(), (out / "report.html").mkdir()), "report.html: a folder"),
        (
            lambda out: (out / "summary.json").write_bytes(
                _edit_json(out / "summary.json", lambda v: v["run"]["config"]["report"].update(grid_size="big"))
            ),
            "recorded report settings are damaged (grid_size:",
        ),
    ],
)
def test_report_over_a_run_folder_it_cannot_render_into_is_one_line(finished_run, tmp_path, damage, expected):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    damage(out)
    _one_line_error(CliRunner().invoke(main, ["report", str(out)]), expected)


class _Payload:
    def __reduce__(self):
        return (print, ("code executed from a payload",))


CACHE_DAMAGE = {
    "garbage weights": lambda weights, log: weights.write_bytes(b"\x00garbage"),
    "truncated weights": lambda weights, log: weights.write_bytes(weights.read_bytes()[:100]),
    "a pickle payload": lambda weights, log: weights.write_bytes(pickle.dumps(_Payload())),
    "wrong checksum": lambda weights, log: log.write_text(
        log.read_text().replace('"weights_sha256": "', '"weights_sha256": "0')
    ),
    "broken log": lambda weights, log: log.write_text("{not json"),
    "empty log": lambda weights, log: log.write_text(""),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", CACHE_DAMAGE, ids=list(CACHE_DAMAGE))
def test_a_damaged_cache_entry_is_retrained(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "base.yaml").write_text(ALONE)
    scenario = load_scenario(tmp_path / "base.yaml")
    first = run_scenario(scenario, tmp_path / "a", progress=Progress(enabled=False))
    [weights] = (tmp_path / "cache" / "victims").glob("*.pt")
    CACHE_DAMAGE[damage](weights, weights.with_suffix(".json"))
    second = run_scenario(scenario, tmp_path / "b", progress=Progress(stream=io.StringIO()))
    assert not second["none"].victim.cached
    assert "code executed" not in capsys.readouterr().out
    np.testing.assert_array_equal(first["none"].candidates, second["none"].candidates)
    third = run_scenario(scenario, tmp_path / "c", progress=Progress(enabled=False))
    assert third["none"].victim.cached  # the entry was replaced by a good one


def test_nan_weights_with_a_matching_checksum_are_retrained(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "base.yaml").write_text(ALONE)
    scenario = load_scenario(tmp_path / "base.yaml")
    run_scenario(scenario, tmp_path / "a", progress=Progress(enabled=False))
    [weights] = (tmp_path / "cache" / "victims").glob("*.pt")
    state = torch.load(weights, weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, weights)
    log = weights.with_suffix(".json")
    entry = json.loads(log.read_text())
    entry["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    log.write_text(json.dumps(entry))
    again = run_scenario(scenario, tmp_path / "b", progress=Progress(enabled=False))
    assert not again["none"].victim.cached


def test_a_diverging_victim_is_reported_and_the_others_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    text = ALONE.replace("[{name: none}]", "[{name: none}, {name: wild, kind: recipe, training: {lr: 1000.0}}]")
    (tmp_path / "base.yaml").write_text(text.replace("hidden: [16]", "hidden: [16], init_scale: 5.0"))
    run = run_scenario(load_scenario(tmp_path / "base.yaml"), tmp_path / "out", progress=Progress(enabled=False))
    assert [r.name for r in run.victims] == ["none", "none.span"] and [f.name for f in run.failures] == ["wild"]
    assert "training diverged" in run.failures[0].reason
    table = (tmp_path / "out" / "comparison.csv").read_text()
    assert "failed: [wild] training diverged" in table
    assert len(list((tmp_path / "cache" / "victims").glob("*.pt"))) == 1  # the NaN victim was not cached


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: KKTAttack(steps=-1), "attack.steps"),
        (lambda: KKTAttack(steps=True), "attack.steps: Input should be a valid integer"),
        (lambda: KKTAttack(optimizer="lbfgs"), "attack.optimizer"),
        (lambda: KKTAttack(restarts=0), "attack.restarts"),
        (lambda: KKTAttack(lr_x=float("nan")), "attack.lr_x: Input should be a finite number"),
        (lambda: KKTAttack(select="oracle"), "attack.select"),
        (lambda: KKTAttack(alpah=3), "attack.alpah: unknown field"),
        (lambda: Auditor(device="tpu"), "tpu"),
        (lambda: Auditor(dtype="float16"), "dtype: 'float16' is not supported"),
        (lambda: Auditor(device="cuda:99"), "cuda"),
    ],
)
def test_python_api_rejects_bad_settings(make, expected):
    with pytest.raises(AuditkitError) as error:
        make()
    assert expected in str(error.value)


def test_python_api_rejects_models_it_cannot_attack(small_victim):
    _, data = small_victim
    auditor = Auditor(KKTAttack(steps=1, restarts=1), device="cpu")
    models = {
        "Tanh": torch.nn.Sequential(torch.nn.Linear(784, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)),
        "has 2 output": torch.nn.Sequential(torch.nn.Linear(784, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)),
        "takes 10 inputs": torch.nn.Sequential(torch.nn.Linear(10, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)),
        r"does not run on inputs of shape \(784,\)": torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)
        ),
    }
    for expected, model in models.items():
        with pytest.raises(AuditkitError, match=expected):
            auditor.audit(model, data)


def test_one_run_per_output_folder_at_a_time(project, tmp_path):
    from filelock import FileLock

    from auditkit.storage.outdir import exclusive_output

    out = tmp_path / "out"
    with exclusive_output(out):  # another run holds the folder
        result = CliRunner().invoke(main, ["run", str(project / "scenarios" / "base.yaml"), "--out", str(out)])
        _one_line_error(result, f"output folder {out} is in use by another auditkit run (pid {os.getpid()} on")
        assert FileLock(out / ".auditkit.lock").is_locked is False  # our probe never took it
    assert not (out / "none").exists()
    assert CliRunner().invoke(main, ["run", str(project / "scenarios" / "base.yaml"), "--out", str(out)]).exit_code == 0


def test_outputs_respect_the_umask(project, tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "out"
        assert (
            CliRunner().invoke(main, ["run", str(project / "scenarios" / "base.yaml"), "--out", str(out)]).exit_code
            == 0
        )
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(path.stat().st_mode) for path in _files(out) if not path.name.startswith(".")}
    assert modes == {0o640}


def _save(path: Path, value) -> Path:
    torch.save(value, path)
    return path


def _mlp_state(widths=(16, 8, 1), nan: bool = False) -> dict:
    layers = [torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    state = {f"{2 * i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.state_dict().items()}
    if nan:
        state["0.weight"][0, 0] = float("nan")
    return state


AUDIT_MODELS = {
    "missing": (lambda d: d / "nope.pt", "nope.pt: file not found"),
    "pickle payload": (lambda d: _write_bytes(d / "m.pt", pickle.dumps(_Payload())), "not a weights-only state_dict"),
    "text": (lambda d: _write_bytes(d / "m.pt", b"hello"), "m.pt: not a weights file"),
    "a tensor": (lambda d: _save(d / "m.pt", torch.zeros(3)), "expected a non-empty state_dict"),
    "empty dict": (lambda d: _save(d / "m.pt", {}), "expected a non-empty state_dict"),
    "conv": (lambda d: _save(d / "m.pt", torch.nn.Conv2d(1, 2, 3).state_dict()), "'weight' with shape (2, 1, 3, 3)"),
    "batchnorm": (
        lambda d: _save(d / "m.pt", {**_mlp_state(), "1.running_mean": torch.zeros(8)}),
        "'1.running_mean' with shape (8,) is not a Linear weight",
    ),
    "broken chain": (
        lambda d: _save(d / "m.pt", {"0.weight": torch.zeros(8, 16), "2.weight": torch.zeros(1, 9)}),
        "layer 1 takes 9 inputs but layer 0 gives 8",
    ),
    "nan weights": (lambda d: _save(d / "m.pt", _mlp_state(nan=True)), "layer 0 holds NaN or infinite weights"),
    "other input size": (lambda d: _save(d / "m.pt", _mlp_state((10, 8, 1))), "the model takes 10 inputs"),
}


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


_X = np.random.default_rng(0).random((6, 16))
_Y = np.array([0, 1] * 3)
AUDIT_DATA = {
    "missing": (lambda d: d / "nope.npz", "nope.npz: file not found"),
    "not npz": (lambda d: _write_bytes(d / "t.npz", b"hello"), "t.npz: not a readable .npz"),
    "object arrays": (
        lambda d: _npz(d / "t.npz", train_x=np.array([{"a": 1}], dtype=object), train_y=_Y),
        "t.npz: not a readable .npz without pickled objects",
    ),
    "no labels": (lambda d: _npz(d / "t.npz", train_x=_X), "t.npz: missing array(s) train_y"),
    "unknown key": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y, weights=_Y), "unknown array(s) weights"),
    "three classes": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=np.arange(6) % 3), "the model has one output"),
    "one class": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=np.zeros(6)), "labels: 1 classes found"),
    "float labels": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=_X[:, 0]), "labels: expected classes"),
    "fewer labels": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y[:4]), "6 rows but 4 labels"),
    "nan inputs": (lambda d: _npz(d / "t.npz", train_x=_X * np.nan, train_y=_Y), "train inputs: NaN or infinite"),
    "text inputs": (lambda d: _npz(d / "t.npz", train_x=np.array([["a"] * 16] * 6), train_y=_Y), "numeric array"),
    "not pixels": (lambda d: _npz(d / "t.npz", train_x=_X - 0.5, train_y=_Y), "not pixels in [0, 1]: give the mean"),
    "bad mean": (
        lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y, mean=np.zeros(3)),
        "mean: 3 values, but the inputs have 16",
    ),
    "bad shape": (lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y, image_shape=[3, 3]), "image_shape: (3, 3)"),
    "not the model's width": (
        lambda d: _npz(d / "t.npz", train_x=_X[:, :15], train_y=_Y),
        "15 features per sample but the model takes 16",
    ),
    "non-members": (
        lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y, nonmember_x=_X[:, :9]),
        "non-members: 9 features, the training inputs have 16",
    ),
}


@pytest.mark.parametrize("case", list(AUDIT_MODELS) + [f"data: {c}" for c in AUDIT_DATA])
def test_audit_rejects_bad_models_and_data_in_one_line(tmp_path, capsys, case):
    if case.startswith("data: "):
        make_model, make_data = (lambda d: _save(d / "m.pt", _mlp_state())), AUDIT_DATA[case[6:]][0]
        expected = AUDIT_DATA[case[6:]][1]
    else:
        make_model, expected = AUDIT_MODELS[case]
        make_data = lambda d: _npz(d / "t.npz", train_x=_X, train_y=_Y)  # noqa: E731
    model, data = make_model(tmp_path), make_data(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["audit", str(model), "--data", str(data), "--out", str(out), "--device", "cpu"])
    _one_line_error(result, expected)
    assert "code executed" not in capsys.readouterr().out + result.output
