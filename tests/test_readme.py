"""The README and the manual: their Python examples run as written (at a smaller size), the README stays short and
points at pages that exist, and the manual builds with MkDocs in strict mode (broken links and references fail)."""

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditkit.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# the same code at a test's size: each replaced text must be in the example exactly once
SMALLER = {
    "n_per_class=25": "n_per_class=5",
    "test_per_class=250": "test_per_class=50",
    "[500, 500]": "[64, 64]",
    "epochs=6000": "epochs=1500",
    "KKTAttack()": "KKTAttack(steps=300, restarts=1)",
    "progress=print": "progress=lambda step, loss: None",
}


def doc_python(page: str, heading: str) -> list[str]:
    """The python blocks of the manual page ``page``'s section under ``heading``, up to the next heading of any
    level."""
    section = (DOCS / page).read_text().split(heading + "\n", 1)[1]
    return re.findall(r"```python\n(.*?)```", re.split(r"\n#+ ", section, maxsplit=1)[0], re.S)


def run_in(folder, monkeypatch, code: str, smaller: dict[str, str]) -> dict:
    """``code`` run in ``folder`` with each text of ``smaller`` replaced (each in it exactly once): its names."""
    for text, replacement in smaller.items():
        assert code.count(text) == 1, f"the manual's example no longer has {text!r}: update this test"
        code = code.replace(text, replacement)
    monkeypatch.chdir(folder)
    namespace = {}
    exec(compile(code, "docs", "exec"), namespace)  # noqa: S102 (our own manual)
    return namespace


@pytest.mark.slow
def test_the_readme_python_example_runs_and_its_result_renders(tmp_path, monkeypatch):
    namespace = run_in(tmp_path, monkeypatch, doc_python("guide/python-api.md", "# Python API")[0], SMALLER)
    assert namespace["summary"].n == 10 and len(namespace["frame"]) == 10
    result = CliRunner().invoke(main, ["report", "runs/mine"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "runs" / "mine" / "report.html").read_text()
    assert namespace["summary"].finding.split(".")[0] in page
    assert (tmp_path / "runs" / "mine" / "reconstructions.png").is_file()
    assert not (tmp_path / "runs" / "mine" / "victim").exists()


@pytest.mark.slow
def test_the_readme_pytest_example_runs_with_its_helper_signature(small_victim):
    """The example as written, on the 20-digit victim (its full attack at one restart: 20 of 20 measured)."""
    model, data = small_victim
    code = doc_python("guide/gates.md", "## Checks in pytest")[0].replace(
        "KKTAttack(steps=3000)", "KKTAttack(steps=3000, restarts=1)"
    )
    namespace = {"model": model, "x": data.train_x, "y": data.train_y, "x_heldout": data.pool_x[:300],
                 "pixel_mean": data.mean}  # fmt: skip
    exec(compile(code, "docs", "exec"), namespace)  # noqa: S102 (our own manual)
    assert namespace["result"].summary().identified >= 8
    assert namespace["short"].summary().verdict == "inconclusive"


TUTORIAL_SMALLER = {"range(100)": "range(30)", "OwnerAttack()": "OwnerAttack(steps=100, restarts=1)"}


@pytest.mark.slow
def test_the_readme_tutorial_script_is_audited_with_no_edits(tmp_path, monkeypatch):
    """The tutorial's training script and its audit, as written but shorter, then its command line."""
    training, audit = doc_python("guide/your-model.md", "## A tutorial training script, audited as it is")
    result = run_in(tmp_path, monkeypatch, training + audit, TUTORIAL_SMALLER)["result"]
    assert result.summary().n == 100 and result.attack.name == "owner"
    assert "view(x.size(0), -1)" in training and "std=STD" in training and "model_state_dict" in training
    (tmp_path / "span.yaml").write_text("name: span\nprograms: 20\n")  # the default attack pair, shorter
    arguments = ["--init", "init.pt", "--attack", "owner,span.yaml", "--steps", "50", "--quiet"]
    ran = CliRunner().invoke(main, ["audit", "checkpoint.pt", "--data", "data.npz", *arguments])
    assert ran.exit_code == 0, ran.output
    assert "[checkpoint]" in ran.output and "test accuracy n/a" not in ran.output


@pytest.mark.slow
def test_the_readme_recorder_script_records_and_audits_in_one_call(tmp_path, monkeypatch):
    code = doc_python("guide/owner-and-records.md", "## Record the training, audit in one call (Adam too)")[0]
    assert len(code.strip().splitlines()) <= 30
    namespace = run_in(tmp_path, monkeypatch, code, {"range(100)": "range(100)"})  # as written
    summary = namespace["result"].summary()
    assert namespace["result"].attack.name == "span" and summary.verdict in ("conclusive", "weak"), summary.finding
    assert summary.auc > 0.9 and (tmp_path / "record" / "manifest.json").is_file()


def test_the_readme_is_short_and_points_at_pages_that_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_the_manual_builds_in_strict_mode(tmp_path):
    """Broken links, anchors or API references in docs/ fail the build (skipped without the docs extra)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    import subprocess
    import sys

    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")]
    built = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
