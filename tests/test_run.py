"""End to end on the toy colour scenario: report files, colours of reconstructions, resume, re-render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auditkit import AuditResult, load_scenario, run_scenario
from auditkit.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {
    "n",
    "identified",
    "identified_fraction",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "seed",
    "versions",
    "device",
    "dtype",
    "dtype_note",
    "config",
    "seconds",
}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    scenario = load_scenario(ROOT / "scenarios" / "toy_colors.yaml", {"attack": {"steps": 1000}, "device": "cpu"})
    summary = run_scenario(scenario, out, progress=Progress(enabled=False))
    return scenario, out, summary


def test_report_files_and_keys(toy_run):
    scenario, out, summary = toy_run
    assert SUMMARY_KEYS <= set(summary)
    assert summary["config"]["attack"]["steps"] == 1000
    for name in (
        "summary.json",
        "comparison.csv",
        "none/per_sample.csv",
        "none/summary.json",
        "none/reconstructions.npz",
        "none/reconstructions.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.rglob(".*")), "temporary files left behind"
    frame = AuditResult.load(out / "none").to_frame()
    assert len(frame) == 2 * scenario.data.n_per_class
    assert {"margin", "normalized_margin", "ssim", "identified", "candidate_lambda", "control_ssim"} <= set(frame)


def test_reconstructions_have_the_right_colour(toy_run):
    _, out, _ = toy_run
    result = AuditResult.load(out / "none")
    frame = result.to_frame()
    matched = result.candidates[frame["candidate"].to_numpy()]  # (n, 3, H, W) pixel space
    red, blue = matched[:, 0].mean((1, 2)), matched[:, 2].mean((1, 2))
    is_red = frame["label"].to_numpy() == -1
    assert (red[is_red] > blue[is_red] + 0.3).all()
    assert (blue[~is_red] > red[~is_red] + 0.3).all()


def test_resume_reuses_finished_audits(toy_run, tmp_path):
    scenario, out, summary = toy_run
    before = (out / "none" / "summary.json").stat().st_mtime_ns
    again = run_scenario(scenario, out, resume=True, progress=Progress(enabled=False))
    assert (out / "none" / "summary.json").stat().st_mtime_ns == before
    assert again["victims"][0]["identified"] == summary["victims"][0]["identified"]
    assert json.loads((out / "summary.json").read_text())["identified"] == summary["identified"]


def test_victims_are_cached_and_runs_reproduce(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    scenario = load_scenario(ROOT / "scenarios" / "toy_colors.yaml", {"attack": {"steps": 200}, "device": "cpu"})
    first = run_scenario(scenario, tmp_path / "a", progress=Progress(enabled=False))
    second = run_scenario(scenario, tmp_path / "b", progress=Progress(enabled=False))
    assert first["victim"]["test_accuracy"] == second["victim"]["test_accuracy"]
    a = np.load(tmp_path / "a" / "none" / "reconstructions.npz")["candidates"]
    b = np.load(tmp_path / "b" / "none" / "reconstructions.npz")["candidates"]
    np.testing.assert_array_equal(a, b)
    assert len(list((tmp_path / "cache" / "victims").glob("*.pt"))) == 1


def test_html_report_and_rerender(toy_run):
    import subprocess
    import sys

    _, out, _ = toy_run
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "identified" in page
    assert "selection rule <b>kkt_residual</b>" in page and "early-stopped" not in page
    (out / "report.html").unlink()
    result = subprocess.run([sys.executable, "-m", "auditkit", "report", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").is_file() and (out / "ssim_vs_margin.png").is_file()


def test_dp_victims_get_the_ceiling_beside_their_measured_success(tmp_path):
    dp = {"name": "dp", "kind": "dp_sgd", "dp": {"target_epsilon": 8.0, "batch_size": 5, "epochs": 5}}
    overrides = {"attack": {"steps": 50}, "device": "cpu", "defenses": ["none", dp]}
    scenario = load_scenario(ROOT / "scenarios" / "toy_colors.yaml", overrides)
    summary = run_scenario(scenario, tmp_path, progress=Progress(enabled=False))
    bounds = summary["victims"][1]["bounds"]
    for criterion in ("identified", "ssim"):
        report = bounds[criterion]
        assert 0 < report["bound"] <= 1 and report["within"] == (report["measured"] <= report["bound"])
        assert report["vacuous"] == (report["bound"] >= 0.999)
    assert "bounds" not in summary["victims"][0]
    table = summary["comparison"]
    assert np.isnan(table[0]["bound_identified"]) and table[1]["bound_identified"] == bounds["identified"]["bound"]
    assert table[1]["epsilon"] == pytest.approx(8.0, rel=0.02)
