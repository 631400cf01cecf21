"""The command line from any folder: built-in presets by name, --presets, --set, --threads, --fail-if."""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from auditkit.cli import main
from auditkit.config.presets import BUILTIN_PRESETS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads_restored():
    """``--threads`` sets torch's process-wide thread count; later tests must not inherit it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.slow
def test_built_in_presets_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = _invoke("list")
    assert listed.exit_code == 0
    for name in ("mnist_quick", "mnist_dp", "kkt_quick", "dp_eps8", "sgd_textbook"):
        assert name in listed.output
    checked = _invoke("validate", "mnist_quick")
    assert checked.exit_code == 0 and "1 victim(s)" in checked.output
    # an inline scenario with no defenses list and no presets folder of its own gets the built-in `none`
    (tmp_path / "mine.yaml").write_text("data: {n_per_class: 5}\n")
    assert _invoke("validate", "mine.yaml").exit_code == 0


@pytest.mark.slow
def test_a_users_presets_come_before_the_built_in_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine" / "attacks").mkdir(parents=True)
    (tmp_path / "mine" / "attacks" / "kkt_quick.yaml").write_text("steps: 123\n")
    (tmp_path / "mine" / "scenarios").mkdir()
    (tmp_path / "mine" / "scenarios" / "tiny.yaml").write_text("extends: mnist_quick\nattack: kkt_quick\n")
    assert "123 attack steps" in _invoke("validate", "mnist_quick", "--presets", "mine").output
    assert "8000 attack steps" in _invoke("validate", "mnist_quick").output
    assert "123 attack steps" in _invoke("validate", "tiny", "--presets", "mine").output
    assert "tiny" in _invoke("list", "--presets", "mine").output


def test_set_overrides_one_setting_through_the_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok = _invoke("validate", "mnist_quick", "--set", "attack.steps=2000", "--set", "data.n_per_class=10")
    assert ok.exit_code == 0 and "2000 attack steps" in ok.output
    for setting, expected in [
        ("attack.steps=-1", "attack.steps: Input should be greater than or equal to 0"),
        ("data.n_per_clas=10", "data.n_per_clas: unknown field"),
        ("attack.steps", "expected key.path=value"),
        ("attack..steps=3", "expected key.path=value"),
        ("attack.steps=[1", "the value is not valid YAML"),
    ]:
        bad = _invoke("validate", "mnist_quick", "--set", setting)
        lines = bad.output.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1 and expected in lines[0], bad.output


@pytest.mark.slow
def test_run_by_name_records_set_and_threads_and_gates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = ["--set", "attack.steps=200", "--threads", "1", "--device", "cpu", "--quiet", "--out", "out"]
    first = _invoke("run", "toy_colors", *quick)
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["threads"] == 1 and summary["run"]["config"]["attack"]["steps"] == 200
    verdict = summary["victims"][0]["summary"]["verdict"]

    again = [*quick, "--resume"]
    holds = _invoke("run", "toy_colors", *again, "--fail-if", "identified >= 0")
    assert holds.exit_code == 1 and "gate failed: [none] identified = " in holds.output
    never = _invoke("run", "toy_colors", *again, "--fail-if", "identified < 0", "--allow-inconclusive")
    assert never.exit_code == 0 and "gate passed" in never.output
    strict = _invoke("run", "toy_colors", *again, "--fail-if", "identified < 0")
    assert strict.exit_code == (0 if verdict == "conclusive" else 1)
    bad = _invoke("run", "toy_colors", *again, "--fail-if", "leaks > 1")
    assert bad.exit_code == 2 and "unknown metric 'leaks'" in bad.output


@pytest.mark.slow
def test_the_wheel_carries_the_presets(tmp_path):
    """Build the wheel from a copy of the sources, install it (no dependencies) into a fresh virtualenv
    that borrows this one's packages, and run the CLI from a folder with no presets in it."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "auditkit", source / "auditkit", ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, source / part)
    for folder in ("scenarios", "attacks", "defenses"):  # mapped into the wheel as auditkit/presets/*/
        shutil.copytree(ROOT / folder, source / folder)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    site = next((fresh / "lib").glob("python*/site-packages"))
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    (site / "borrowed.pth").write_text("\n".join(borrowed) + "\n")  # dependencies only: .pth files there are not run
    wheel = next(wheels.glob("auditkit-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    python = fresh / "bin" / "python"

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [str(python), "-c", "from auditkit.cli import main; main()", *args]
        return subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)

    where = subprocess.run([str(python), "-c", "import auditkit; print(auditkit.__file__)"], cwd=work,
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert where.stdout.startswith(str(site)), where
    listed = cli("list")
    assert listed.returncode == 0 and "mnist_quick" in listed.stdout and "kkt_quick" in listed.stdout, listed
    checked = cli("validate", "mnist_quick")
    assert checked.returncode == 0 and "ok (mnist_quick" in checked.stdout, checked
    assert where.stdout.startswith(str(site)) and not (work / "scenarios").exists()  # the wheel's own copy


@pytest.mark.slow
def test_the_cards_layout_runs_from_a_clone(monkeypatch):
    """`auditkit run scenarios/mnist_dp.yaml` from the repository's root: the presets are its top-level folders."""
    monkeypatch.chdir(ROOT)
    for kind in ("scenarios", "attacks", "defenses"):
        assert sorted((ROOT / kind).glob("*.yaml")), kind
    checked = _invoke("validate", "scenarios/mnist_dp.yaml")
    assert checked.exit_code == 0 and "ok (mnist_dp: 6 victim(s)" in checked.output, checked.output
    assert BUILTIN_PRESETS == ROOT  # a checkout reads its own files, not a copy
