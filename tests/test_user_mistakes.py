"""The examples of the independent walk of hostile inputs, one per case, by kind: settings that would mean nothing
(refused or stated), user mistakes that gave tracebacks (one line now), and messages that were vague or misleading
(they name the file, field or argument and what is wrong). The generated cases of each kind are in
tests/test_properties.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY

from auditkit import AuditkitError, Auditor, KKTAttack
from auditkit.cli import entry, main
from auditkit.data.user_data import audit_data
from auditkit.errors import ConfigError, UnsupportedModelError
from auditkit.victims import build_mlp

PAIR = (np.random.default_rng(0).random((6, 16)), np.arange(6) % 2)


def _one_line(result, expected: str) -> None:
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.exit_code, result.output)
    errors = [line for line in result.output.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], result.output


@pytest.fixture
def files(tmp_path, mnist):
    """A model file, a data file of 20 MNIST digits (both parities) and a scenario, in the test's folder."""
    images, labels = mnist
    chosen = np.concatenate([np.flatnonzero(labels % 2 == parity)[:10] for parity in (0, 1)])
    x = images[chosen].reshape(20, -1).astype(np.float32)
    np.savez(tmp_path / "data.npz", train_x=x, train_y=labels[chosen] % 2, nonmember_x=images[200:300].reshape(100, -1))
    torch.save(build_mlp(784, [16]).state_dict(), tmp_path / "model.pt")
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def _audit(files, *extra: str):
    arguments = ["audit", str(files / "model.pt"), "--data", str(files / "data.npz"), "--device", "cpu", "--quiet"]
    return CliRunner().invoke(main, [*arguments, "--out", str(files / "out"), *extra])


# settings that would mean nothing: refused, or stated


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            "victim: {hidden: [16], training: {optimizer: sgd, batch_size: 1000, epochs: 5}}",
            "batch_size: 1000 is larger",
        ),
        (
            "data: {dataset: toy_colors, n_per_class: 5, test_per_class: 20, image_size: 2}",
            "greater than or equal to 3",
        ),
    ],
)
def test_settings_that_would_mean_nothing_are_refused(files, change, expected):
    key = change.split(":")[0]
    text = "\n".join(change if line.startswith(f"{key}:") else line for line in TINY.splitlines())
    (files / "case.yaml").write_text(text + "\n")
    _one_line(CliRunner().invoke(main, ["validate", str(files / "case.yaml")]), expected)


def test_validate_counts_every_victim_of_a_grid(files):
    (files / "grid.yaml").write_text(TINY + "grid: {seed: [0, 1]}\n")
    result = CliRunner().invoke(main, ["validate", str(files / "grid.yaml")])
    assert result.exit_code == 0 and "2 victim(s)" in result.output, result.output


def test_options_that_would_be_ignored_are_refused(files):
    _one_line(CliRunner().invoke(main, ["run", str(files / "tiny.yaml"), "--address", "x:1"]), "--address x:1")
    _one_line(_audit(files, "--set", "attack.steps=-3", "--steps", "5"), "--steps and --set attack.steps")
    torch.save(build_mlp(784, [16], seed=1).state_dict(), files / "init.pt")
    _one_line(_audit(files, "--init", str(files / "init.pt"), "--attack", "kkt_quick"), "--init: the kkt attack")
    assert not (files / "out").exists()


def test_duplicated_rows_and_mapped_labels_are_stated(files):
    x = np.random.default_rng(0).random((6, 16))
    data = audit_data(np.concatenate([x, x[:2]]), np.array([0, 2, 0, 2, 0, 2, 0, 2]), image_shape=(4, 4))
    assert "2 training rows repeat another training row" in " ".join(data.notes)
    assert "labels 0 -> -1, 2 -> +1" in data.notes
    result = _audit(files, "--steps", "1")
    assert result.exit_code == 0, result.output


def test_mistakes_in_nonmembers_and_test_are_named_as_such():
    auditor = Auditor(KKTAttack(steps=1, restarts=1), device="cpu")
    for argument in ("nonmembers", "test"):
        with pytest.raises(AuditkitError, match=rf"^{argument}: expected \(inputs, labels\)"):
            auditor.audit(build_mlp(16, [8]), PAIR, **{argument: [1, 2, 3]})


def test_a_name_that_is_a_path_is_refused():
    with pytest.raises(ConfigError, match=r"name: '\.\./x' must match"):
        Auditor(KKTAttack(steps=1), device="cpu").audit(build_mlp(16, [8]), PAIR, name="../x")


# user mistakes that gave tracebacks


@pytest.mark.parametrize(
    "state, expected",
    [
        ({"0.weight": torch.zeros(0, 784), "2.weight": torch.zeros(1, 0)}, "layer 0's weight has shape (0, 784)"),
        ({"0.weight": torch.full((16, 784), 1e-40), "2.weight": torch.ones(1, 16)}, "all zero or subnormal"),
    ],
)
def test_models_the_attack_cannot_read_get_one_line_naming_why(files, state, expected):
    torch.save(state, files / "model.pt")
    _one_line(_audit(files, "--steps", "5"), expected)


def test_a_linear_model_is_not_applicable_rather_than_refused(files):
    torch.save({"0.weight": torch.randn(1, 784)}, files / "model.pt")
    ran = _audit(files, "--steps", "5")
    assert ran.exit_code == 0, ran.output
    assert ran.output.count("not applicable") >= 2 and "is linear (no hidden layer)" in ran.output, ran.output


def test_files_and_folders_in_the_wrong_place_get_one_line(files):
    (files / "model.pt").write_text("hello")
    _one_line(_audit(files), "model.pt: not a weights file")
    os.symlink("loop2.yaml", files / "loop1.yaml")
    os.symlink("loop1.yaml", files / "loop2.yaml")
    _one_line(CliRunner().invoke(main, ["run", str(files / "loop1.yaml")]), "loop1.yaml: cannot be read")
    (files / "run" / "summary.json").mkdir(parents=True)
    _one_line(CliRunner().invoke(main, ["report", str(files / "run")]), "summary.json: a folder, not a file")
    torch.save(build_mlp(784, [16]).state_dict(), files / "model.pt")
    _one_line(_audit(files, "--out", str(files / ("x" * 300))), "not writable (File name too long)")


def test_python_api_mistakes_are_auditkit_errors(tmp_path):
    with pytest.raises(ConfigError, match="dtype: torch.int32 is not supported"):
        Auditor(KKTAttack(steps=1), device="cpu", dtype=torch.int32)

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.out = torch.nn.Linear(16, 8), torch.nn.Linear(8, 1)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x))), x

    with pytest.raises(UnsupportedModelError, match="its forward returns a tuple"):
        Auditor(KKTAttack(steps=1, restarts=1), device="cpu").audit(Pair(), PAIR)
    result = Auditor(KKTAttack(steps=1, restarts=1), device="cpu").audit(build_mlp(16, [8]), PAIR)
    (tmp_path / "taken").write_text("x")
    with pytest.raises(AuditkitError, match="taken: exists and is not a folder"):
        result.save(tmp_path / "taken")


def test_an_interrupt_during_start_up_ends_in_one_line(monkeypatch, capsys):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr("auditkit.cli.main", interrupted)
    with pytest.raises(SystemExit) as stopped:
        entry()
    assert stopped.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"


# messages that were vague or misleading


def test_messages_name_what_is_wrong(files):
    x = np.random.default_rng(0).random((6, 16))
    x[0, 0] = 1.0004  # just over 1: the message must not round it back onto 1
    with pytest.raises(AuditkitError, match=r"values in \[[0-9.e-]+, 1\.0004\]"):
        audit_data(x, np.arange(6) % 2, image_shape=(4, 4))
    for mean, expected in ((np.full(16, np.inf), "mean: holds NaN or infinite"), (np.array(["0.1"] * 16), "<U3")):
        with pytest.raises(AuditkitError, match=expected):
            audit_data(x - 0.5, np.arange(6) % 2, mean=mean, image_shape=(4, 4))
    (files / "attacks").mkdir()
    (files / "attacks" / "kkt_quick.yaml").write_text("name: kkt\nsteps: -5\n")
    (files / "uses.yaml").write_text(
        TINY.replace("attack: {steps: 10, restarts: 1, log_every: 5}", "attack: kkt_quick")
    )
    validated = CliRunner().invoke(main, ["validate", str(files / "uses.yaml"), "--presets", str(files)])
    _one_line(validated, "attacks/kkt_quick.yaml: attack.steps")
    os.symlink("/nonexistent/folder", files / "dangling")
    _one_line(CliRunner().invoke(main, ["run", str(files / "tiny.yaml"), "--out", str(files / "dangling")]),
              "a symbolic link to nothing")  # fmt: skip
    _one_line(CliRunner().invoke(main, ["run", ""]), "scenario: empty")


def test_a_scenario_of_many_keys_is_refused_quickly(files):
    import time

    (files / "wide.yaml").write_text(TINY + "victim_extra:\n" + "".join(f"  k{i}: {i}\n" for i in range(60_000)))
    started = time.perf_counter()
    _one_line(CliRunner().invoke(main, ["validate", str(files / "wide.yaml")]), "more than 10,000 keys and values")
    assert time.perf_counter() - started < 10


# README's promises, each pinned


def test_every_error_class_of_the_package_is_an_auditkit_error():
    import importlib
    import inspect
    import pkgutil

    import auditkit

    found = {}
    for module in pkgutil.walk_packages(auditkit.__path__, "auditkit."):
        if module.name.endswith("__main__"):
            continue
        for name, value in vars(importlib.import_module(module.name)).items():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.name:
                found[f"{module.name}.{name}"] = value
    assert found and all(issubclass(error, AuditkitError) for error in found.values()), found


def test_images_under_the_ssim_window_are_refused():
    x = np.random.default_rng(0).random((6, 16))
    with pytest.raises(AuditkitError, match=r"image_shape: \(2, 8\) has a side under 3 pixels, the SSIM window"):
        audit_data(x, np.arange(6) % 2, image_shape=(2, 8))


def test_the_command_line_module_imports_no_torch_before_a_command_runs():
    import subprocess
    import sys

    probe = "import sys, auditkit.cli; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"  # an interrupt while they load lands in entry()'s handler, not a traceback
