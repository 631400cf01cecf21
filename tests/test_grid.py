"""Scenario grids (one victim per defense and combination of settings) and the executors that run them."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from auditkit import RunResult, load_scenario, run_scenario
from auditkit.errors import ScenarioError
from auditkit.progress import Progress
from auditkit.running.executor import ExecutorError

PRESETS = Path(__file__).resolve().parents[1]  # scenarios/, attacks/, defenses/
QUIET = Progress(enabled=False)


def _grid(**overrides):
    settings = {"attack": {"steps": 100}, "device": "cpu", "victim": {"training": {"epochs": 300}}, "beside": []}
    settings |= overrides
    return load_scenario(PRESETS / "scenarios" / "toy_colors.yaml", settings)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each Ray task uses: results depend on the thread count
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_grid_makes_one_victim_per_combination(tmp_path, one_thread):
    scenario = _grid(grid={"seed": [0, 1], "data.n_per_class": [4, 6]})
    names = [f"none.seed-{s}.n_per_class-{n}" for s in (0, 1) for n in (4, 6)]
    run = run_scenario(scenario, tmp_path, progress=QUIET)
    assert [result.name for result in run.victims] == names
    assert [result.summary().n for result in run.victims] == [8, 12, 8, 12]
    assert [result.attack.seed for result in run.victims] == [0, 0, 1, 1]
    assert pd.read_csv(tmp_path / "comparison.csv")["defense"].tolist() == names
    assert RunResult.load(tmp_path).summary()[3].name == names[3]
    resumed = run_scenario(scenario, tmp_path, resume=True, progress=QUIET)  # every audit reused, none redone
    assert [r.to_frame().equals(s.to_frame()) for r, s in zip(resumed.victims, run.victims, strict=True)] == [True] * 4


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"data.n_per_clas": [4]}, "data.n_per_clas: unknown field"),
        ({"seed": [-1]}, "grid point seed--1: seed"),
        ({"seed": []}, "distinct values"),
        ({"defenses": [["none"]]}, "not a setting a grid can vary"),
        ({"seed": [0], "attack.seed": [1]}, "end in the same name"),
        ({"data.image_size": [[8]]}, "numbers, strings or booleans"),
    ],
)
def test_a_bad_grid_is_one_line_naming_the_setting(grid, message):
    with pytest.raises(ScenarioError, match=message):
        _grid(grid=grid)


def test_ray_is_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ExecutorError, match=r"pip install 'auditkit\[ray\]'"):
        run_scenario(_grid(), tmp_path, progress=QUIET, executor="ray")


@pytest.mark.slow
def test_ray_tasks_give_the_local_results(tmp_path, one_thread):
    """A local Ray instance (2 CPUs, started here, no network): each victim a task of one CPU; the
    results equal the local executor's on one thread, victim for victim."""
    ray = pytest.importorskip("ray")
    scenario = _grid(grid={"seed": [0, 1]}, defenses=["none", "no_weight_decay"])
    local = run_scenario(scenario, tmp_path / "local", progress=QUIET)
    ray_dir = Path(tempfile.mkdtemp(prefix="ray"))  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(ray_dir), log_to_driver=False)
    try:
        remote = run_scenario(scenario, tmp_path / "ray", progress=QUIET, executor="ray", threads=1)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert [r.name for r in remote.victims] == [r.name for r in local.victims] and len(local.victims) == 4
    for mine, theirs in zip(remote.victims, local.victims, strict=True):
        pd.testing.assert_frame_equal(mine.to_frame(), theirs.to_frame())
    assert remote.facts.executor == "ray" and remote.facts.threads == 1
    assert (tmp_path / "ray" / "report.html").is_file()
