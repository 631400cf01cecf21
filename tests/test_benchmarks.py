"""The benchmarks are a tool: every script registered with the runner, the results index generated and current,
and every command it records names a benchmark and a scenario that exist."""

from __future__ import annotations

import ast
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from auditkit.config.loading import scenario_path
from auditkit.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[1]
RUNNER = runpy.run_path(str(ROOT / "benchmarks" / "__main__.py"), run_name="benchmarks_runner")


def _has_main(path: Path) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(path.read_text()).body)


def test_every_benchmark_script_is_registered():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__main__" and _has_main(p)}
    assert scripts == set(RUNNER["BENCHMARKS"])


def test_the_results_index_is_generated_and_current():
    index = (ROOT / "benchmarks" / "results" / "INDEX.md").read_text()
    for name, command in RUNNER["result_commands"]().items():
        assert f"| `{name}` |" in index, name
        assert not command or f"`{command}`" in index, name


@pytest.mark.parametrize("command", sorted({c for c in RUNNER["result_commands"]().values() if c}))
def test_every_recorded_command_names_what_exists(command):
    words = shlex.split(command)
    if words[0] == "auditkit":
        targets = [words[2]]
    else:
        runner = words[:2] == ["python", "benchmarks"]
        script = words[2] if runner else Path(words[1]).stem
        assert script in RUNNER["BENCHMARKS"] or (ROOT / words[1]).is_file(), command
        start = 3 if runner else 2
        targets = [w for w in words[start : start + 1] if not w.startswith("-") and not w.isupper()]  # SCENARIO
    for target in targets:
        try:
            assert scenario_path(target).is_file() or (ROOT / target).is_file(), command
        except ScenarioError as error:
            pytest.fail(f"{command}: {error}")


def test_the_runner_lists_and_refuses_unknown_names():
    listing = subprocess.run([sys.executable, "benchmarks", "list"], cwd=ROOT, capture_output=True, text=True)
    assert listing.returncode == 0 and "scenario_seeds" in listing.stdout
    unknown = subprocess.run([sys.executable, "benchmarks", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown benchmark 'nope'" in unknown.stderr


def test_every_benchmark_imports():
    """A benchmark that no longer imports (a name moved in the package) fails here, not in the next session."""
    names = ", ".join(RUNNER["BENCHMARKS"])
    result = subprocess.run(
        [sys.executable, "-c", f"import {names}"], cwd=ROOT / "benchmarks", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
