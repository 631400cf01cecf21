"""The benchmarks are a tool: every script registered with the runner, the results index generated and current,
and every command it records names a benchmark and a scenario that exist."""

from __future__ import annotations

import ast
import importlib
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

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


def test_findings_keep_rows_per_seed_and_compute_only_the_missing(tmp_path, monkeypatch):
    """A later session without the run folders adds seeds to a finding: kept rows (frames included) read back
    as they were written, only missing seeds computed, and rows of another recipe never mixed in."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    findings = importlib.import_module("findings")
    monkeypatch.setattr(findings, "ROWS", tmp_path / "rows")
    computed = []

    def compute(seeds):
        computed.append(list(seeds))
        frame = pd.DataFrame({"identified": [True, False], "margin": [0.5, np.nan], "label": [1, -1]})
        return pd.DataFrame([{"seed": s, "identified": s + 1, "verdict": "conclusive", "frame": frame} for s in seeds])

    first = findings.per_seed("toy", [1, 0], {"lr": 0.3, "widths": (2, 3)}, compute)
    again = findings.per_seed("toy", [0, 1, 2], {"lr": 0.3, "widths": (2, 3)}, compute)
    other = findings.per_seed("toy", [0], {"lr": 0.1, "widths": (2, 3)}, compute)
    assert computed == [[1, 0], [2], [0]]
    assert list(first["seed"]) == [0, 1] and list(again["seed"]) == [0, 1, 2] and list(other["identified"]) == [1]
    assert list(again["identified"]) == [1, 2, 3]
    read = again.loc[0, "frame"]
    pd.testing.assert_frame_equal(read, first.loc[0, "frame"])
    assert read["identified"].dtype == bool and read["label"].dtype == np.int64
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == [f"toy_seed{s}.json" for s in (0, 1, 2)]


def test_fast_gd_takes_the_steps_train_mlp_takes(monkeypatch):
    """The 2-D victims' trainer: a bias in the first layer, weight decay, float64; after 30 epochs every weight
    is where ``train_mlp``'s full-batch GD puts it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    train_gd = importlib.import_module("fast_gd").train_gd
    from auditkit.victims.models import build_mlp
    from auditkit.victims.training import train_mlp

    x = torch.randn(9, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    mine, theirs, untrained = (build_mlp(2, [16, 16], bias="first", init_scale=0.5, dtype=torch.float64) for _ in "abc")
    train_gd(mine, x, labels, lr=0.3, epochs=30, weight_decay=1e-2)
    train_mlp(theirs, x, labels, lr=0.3, epochs=30, weight_decay=1e-2)
    assert not torch.equal(mine[0].weight, untrained[0].weight)  # it trained
    for a, b in zip(mine.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
