"""End to end on the toy colour scenario: results contract, report files, caching, resume, re-render."""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes

from auditkit import AuditResult, RunResult, load_scenario, run_scenario
from auditkit.data.datasets import load_data
from auditkit.progress import Progress
from auditkit.report import write_report
from auditkit.report.plots import privacy_tradeoff, ssim_vs_margin
from auditkit.results.facts import PrivacyFacts, VictimFacts
from auditkit.results.run import VictimFailure
from auditkit.scoring.bounds import dp_sgd_bound, kappa_above
from auditkit.storage.outdir import LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT  # scenarios/, attacks/, defenses/ at the top of the repository
QUIET = Progress(enabled=False)


def _toy(**overrides):
    return load_scenario(
        PRESETS / "scenarios" / "toy_colors.yaml",
        {"attack": {"steps": 200}, "device": "cpu", "beside": [], **overrides},  # the KKT attack's runs alone
    )


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    overrides = {"attack": {"steps": 1000}, "device": "cpu", "report": {"grid_size": 6}, "beside": []}
    scenario = load_scenario(PRESETS / "scenarios" / "toy_colors.yaml", overrides)
    return scenario, out, run_scenario(scenario, out, progress=QUIET)


@pytest.mark.slow
def test_results_contract_round_trips(toy_run):
    scenario, out, run = toy_run
    stored = json.loads((out / "summary.json").read_text())
    assert set(stored) == {"run", "victims", "failures"}  # one shape whatever the number of victims
    assert stored["run"]["config"]["attack"]["steps"] == 1000 and stored["run"]["seed"] == scenario.seed
    assert "config" not in json.dumps(stored["victims"])  # run facts are stored once, at the run level
    loaded = RunResult.load(out)
    assert loaded.facts == run.facts
    assert loaded.summary() == run.summary()
    assert loaded["none"].attack == run["none"].attack
    assert loaded["none"].victim == run["none"].victim
    for name in ("comparison.csv", "report.html", "ssim_vs_margin.png", "none/reconstructions.png"):
        assert (out / name).is_file(), name
    assert [p.name for p in out.rglob(".*")] in ([], [LOCK_FILE]), "temporary files left behind"
    frame = loaded["none"].to_frame()
    assert len(frame) == 2 * scenario.data.n_per_class
    assert {"margin", "normalized_margin", "ssim", "identified", "candidate_lambda", "control_ssim"} <= set(frame)
    assert run.summary()[0].identified == int(frame["identified"].sum())
    assert {"torch", "opacus", "dp-accounting"} <= set(run.facts.versions)


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_report_settings_reach_the_figures(toy_run, tmp_path, monkeypatch):
    _, out, run = toy_run
    # report.grid_size: 6 draws 6 reconstructions per row instead of 12 (the default 24 in two rows)
    write_report(run, tmp_path, grid_size=24)
    assert _png_width(out / "none" / "reconstructions.png") < 0.6 * _png_width(
        tmp_path / "none" / "reconstructions.png"
    )
    # the SSIM-vs-margin figure marks the configured threshold, not a fixed 0.4
    lines = []
    monkeypatch.setattr(Axes, "axhline", lambda self, y=0, **kwargs: lines.append(y))
    result = run["none"]
    ssim_vs_margin([dataclasses.replace(result, ssim_threshold=0.55)])
    assert lines == [0.55]


def test_reconstructions_have_the_right_colour(toy_run):
    _, out, _ = toy_run
    result = AuditResult.load(out / "none")
    frame = result.to_frame()
    matched = result.candidates[frame["candidate"].to_numpy()]  # (n, 3, H, W) pixel space
    red, blue = matched[:, 0].mean((1, 2)), matched[:, 2].mean((1, 2))
    is_red = frame["label"].to_numpy() == -1
    assert (red[is_red] > blue[is_red] + 0.3).all()
    assert (blue[~is_red] > red[~is_red] + 0.3).all()


@pytest.mark.slow
def test_resume_reuses_finished_audits_of_the_same_settings_only(toy_run, tmp_path):
    scenario, out, run = toy_run
    before = (out / "none" / "result.json").stat().st_mtime_ns
    again = run_scenario(scenario, out, resume=True, progress=QUIET)
    assert (out / "none" / "result.json").stat().st_mtime_ns == before
    assert again.summary() == run.summary()
    assert (run.facts.reused, again.facts.reused) == (0, 1)  # the wall time of `again` is not the audit's
    assert "1 finished victim(s) reused" in (out / "report.html").read_text()
    changed = load_scenario(
        PRESETS / "scenarios" / "toy_colors.yaml", {"attack": {"steps": 900}, "device": "cpu", "beside": []}
    )
    redone = run_scenario(changed, out, resume=True, progress=QUIET)
    assert (out / "none" / "result.json").stat().st_mtime_ns != before
    assert redone["none"].fingerprint != run["none"].fingerprint
    assert len(redone["none"].evidence["history_steps"]) != len(run["none"].evidence["history_steps"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, damage",
    [
        ("result.json", b'{"name": "none", "fin'),
        ("result.json", b'{"name": "../x", "fingerprint": 1}'),
        ("reconstructions.npz", b"garbage"),
        ("per_sample.csv", b"sample\n0\n"),
    ],
)
def test_resume_over_a_damaged_or_foreign_result_audits_the_victim_again(toy_run, tmp_path, name, damage):
    scenario, out, run = toy_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "none" / name).write_bytes(damage)
    again = run_scenario(scenario, copy, resume=True, progress=QUIET)
    assert again.facts.reused == 0 and again.summary() == run.summary()
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]


@pytest.mark.slow
def test_a_cached_victim_is_not_trained_again(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    first = run_scenario(_toy(), tmp_path / "a", progress=QUIET)
    import auditkit.defenses.base

    def no_training(*args, **kwargs):
        raise AssertionError("the victim was trained again")

    monkeypatch.setattr(auditkit.defenses.base, "train_mlp", no_training)
    second = run_scenario(_toy(), tmp_path / "b", progress=QUIET)
    assert not first["none"].victim.cached and second["none"].victim.cached
    assert first["none"].victim.training == second["none"].victim.training
    np.testing.assert_array_equal(first["none"].candidates, second["none"].candidates)


@pytest.mark.parametrize(
    "change", [{"victim": {"training": {"lr": 0.2}}}, {"victim": {"training": {"weight_decay": 0.02}}}]
)
@pytest.mark.slow
def test_a_victim_with_another_recipe_is_trained_anew(tmp_path, monkeypatch, change):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    first = run_scenario(_toy(), tmp_path / "a", progress=QUIET)
    second = run_scenario(_toy(**change), tmp_path / "b", progress=QUIET)
    assert not second["none"].victim.cached
    assert second["none"].victim.training.recipe != first["none"].victim.training.recipe


@pytest.mark.slow
def test_report_rerenders_from_saved_results(toy_run):
    _, out, _ = toy_run
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "identified" in page
    assert "selection rule kkt_residual" in page and "early-stopped" not in page
    (out / "report.html").unlink()
    (out / "none" / "reconstructions.png").unlink()
    result = subprocess.run([sys.executable, "-m", "auditkit", "report", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").read_text() == page  # the loaded results draw the same page
    assert (out / "none" / "reconstructions.png").is_file()


@pytest.mark.slow
def test_dp_victims_get_the_ceiling_beside_their_measured_success(tmp_path, monkeypatch):
    import auditkit.auditing.auditor

    seeds = []

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return kappa_above(*args, seed=seed, **kwargs)

    monkeypatch.setattr(auditkit.auditing.auditor, "kappa_above", spy)
    dp = {"name": "dp", "kind": "dp_sgd", "dp": {"target_epsilon": 8.0, "batch_size": 5, "epochs": 5}}
    scenario = _toy(defenses=["none", dp], seed=3)
    run = run_scenario(scenario, tmp_path, progress=QUIET)
    assert seeds == [3]  # the SSIM baseline's guesses are drawn with the run's seed
    data = load_data(scenario.data, scenario.seed)
    result, summary = run["dp"], run["dp"].summary()
    privacy, bounds = result.victim.training.privacy, result.bounds
    assert run["none"].bounds is None
    assert privacy.epsilon == pytest.approx(8.0, rel=0.02)
    assert 0 <= summary.epsilon_lower <= privacy.epsilon  # what one run proves never exceeds the accountant
    assert result.membership().paired.pairs == summary.n  # every member paired with a non-member of its class
    # identified: kappa = 1 / (members + non-members), one try per candidate, the mechanism's PLD
    kappa = 1 / (len(data.train_x) + len(data.pool_x))
    tries = min(1.0, result.attack.candidates * kappa)
    expected = dp_sgd_bound(tries, privacy.noise_multiplier, privacy.sample_rate, privacy.steps)
    assert bounds.identified.kappa == pytest.approx(kappa)
    assert bounds.identified.bound == pytest.approx(expected, rel=1e-9)
    assert bounds.identified.measured == summary.identified_fraction
    assert bounds.ssim.measured == summary.ssim_above_threshold / summary.n
    table = RunResult.load(tmp_path)
    assert table["dp"].bounds == bounds


@pytest.mark.slow
def test_defense_curves_are_drawn_and_said_in_words(tmp_path):
    """Several DP victims: leakage and accuracy against epsilon (no noise at the right edge), a sentence
    per victim; a grid over weight decay: leakage against weight decay. One DP victim: no curve."""
    dp = {"kind": "dp_sgd", "dp": {"batch_size": 5, "epochs": 3}}
    ladder = [{**dp, "name": f"dp_{sigma}", "dp": {**dp["dp"], "noise_multiplier": sigma}} for sigma in (0.0, 2.0)]
    run = run_scenario(_toy(defenses=["none", *ladder]), tmp_path / "dp", progress=QUIET)
    assert (tmp_path / "dp" / "privacy_tradeoff.png").is_file()
    assert not (tmp_path / "dp" / "weight_decay.png").is_file()
    page = (tmp_path / "dp" / "report.html").read_text()
    sentences = re.findall(r"<li>(dp_[^<]*)</li>", page)
    assert [s.split(":")[0] for s in sentences] == ["dp_2.0", "dp_0.0"]  # by epsilon, no noise last
    assert "At no noise (epsilon infinite)" in sentences[-1]
    for sentence in sentences:
        summary = run[sentence.split(":")[0]].summary()
        assert f"identifies {summary.identified} of {summary.n}" in html.unescape(sentence)
        assert "points below none" in sentence
    grid = {"victim.training.weight_decay": [0.0, 0.01, 0.05]}
    decays = run_scenario(_toy(grid=grid), tmp_path / "wd", progress=QUIET)
    assert len(decays.victims) == 3 and (tmp_path / "wd" / "weight_decay.png").is_file()
    assert not (tmp_path / "wd" / "privacy_tradeoff.png").is_file()
    assert privacy_tradeoff(run.victims[:2]) is None


def _start(scenario: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "auditkit", "run", str(scenario), "--out", str(out), "--quiet", *extra]
    # a child inherits an ignored SIGINT (an earlier test's library may have set it): give it the default back,
    # so Python installs its Ctrl-C handler as in a shell
    restore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore)


def _when_first_victim_done(process: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out / "a" / "result.json").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first victim"
        time.sleep(0.05)
    time.sleep(0.5)  # into the second victim's audit


@pytest.mark.slow
def test_killed_and_interrupted_runs_resume_to_the_same_result(tmp_path):
    """benchmarks/kill_resume.py does this 10 times at random moments (10/10 identical)."""
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        "name: two\ndevice: cpu\ndata: {dataset: toy_colors, n_per_class: 10, test_per_class: 50}\n"
        "victim: {hidden: [100, 100], training: {epochs: 1500, weight_decay: 0.01}}\n"
        "defenses: [{name: a}, {name: b, kind: recipe, training: {weight_decay: 0.05}}]\n"
        "attack: {steps: 1000, restarts: 2}\n"
    )
    reference = run_scenario(load_scenario(scenario), tmp_path / "reference", progress=QUIET)
    killed = _start(scenario, tmp_path / "killed")
    _when_first_victim_done(killed, tmp_path / "killed")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted = _start(scenario, tmp_path / "interrupted")
    _when_first_victim_done(interrupted, tmp_path / "interrupted")
    interrupted.send_signal(signal.SIGINT)  # the first Ctrl-C stops the run, keeping what finished
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    for out in (tmp_path / "killed", tmp_path / "interrupted"):
        assert (out / "a" / "result.json").is_file() and not (out / "b" / "result.json").is_file()
        resumed = _start(scenario, out, "--resume")
        assert resumed.wait(timeout=300) == 0
        for name in ("a", "b"):
            assert (out / name / "per_sample.csv").read_bytes() == (
                tmp_path / "reference" / name / "per_sample.csv"
            ).read_bytes()
        assert RunResult.load(out).summary() == reference.summary()
        assert not list(out.rglob("*.auditkit-tmp"))


class _PageReader(HTMLParser):
    """What a browser would fetch and show: image sources, external references, text by CSS class."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.external, self.text, self.findings = [], [], [], []
        self._in_finding = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith(("data:", "#")):
                self.external.append(f"{tag} {key}={attrs[key]}")
        if tag in ("script", "link", "iframe", "object"):
            self.external.append(tag)
        self._in_finding = attrs.get("class") == "finding-text"

    def handle_endtag(self, tag):
        self._in_finding = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_finding:
            self.findings.append(data.strip())


@pytest.mark.slow
def test_the_report_page_is_self_contained_and_answers_first(toy_run, tmp_path):
    _, _, run = toy_run
    dp = dataclasses.replace(
        run["none"],
        name="dp",
        victim=VictimFacts.trained_elsewhere(PrivacyFacts(8.0, 1e-5, "rdp", 1.1, 0.25, 400, 1.0), 1.0),
    )
    page_run = RunResult(run.facts, [run["none"], dp], [VictimFailure("broken", "training diverged")])
    page = write_report(page_run, tmp_path).read_text()
    reader = _PageReader()
    reader.feed(page)
    assert reader.images and all(src.startswith("data:image/png;base64,") for src in reader.images)
    assert reader.external == []
    assert reader.findings == [result.summary().finding for result in page_run.victims]
    text = " ".join(reader.text)
    assert "None" not in text and "nan" not in text.split()
    assert text.index("Findings") < text.index("Comparison") < text.index("Glossary")
    assert "not audited: training diverged" in text and "n/a" in text
