"""The README's Python example runs as written (at a smaller size), and its saved result renders a report."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditkit.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
# the same code at a test's size: each replaced text must be in the example exactly once
SMALLER = {
    "n_per_class=25": "n_per_class=5",
    "test_per_class=250": "test_per_class=50",
    "[500, 500]": "[64, 64]",
    "epochs=6000": "epochs=1500",
    "KKTAttack()": "KKTAttack(steps=300, restarts=1)",
    "progress=print": "progress=lambda step, loss: None",
}


def readme_python(heading: str) -> list[str]:
    """The python blocks of README.md's section under ``heading``, up to the next heading of any level."""
    section = README.read_text().split(heading + "\n", 1)[1]
    return re.findall(r"```python\n(.*?)```", re.split(r"\n#+ ", section, maxsplit=1)[0], re.S)


def run_in(folder, monkeypatch, code: str, smaller: dict[str, str]) -> dict:
    """``code`` run in ``folder`` with each text of ``smaller`` replaced (each in it exactly once): its names."""
    for text, replacement in smaller.items():
        assert code.count(text) == 1, f"the README example no longer has {text!r}: update this test"
        code = code.replace(text, replacement)
    monkeypatch.chdir(folder)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    return namespace


@pytest.mark.slow
def test_the_readme_python_example_runs_and_its_result_renders(tmp_path, monkeypatch):
    namespace = run_in(tmp_path, monkeypatch, readme_python("## Python API")[0], SMALLER)
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
    code = readme_python("### Checks in pytest")[0].replace(
        "KKTAttack(steps=3000)", "KKTAttack(steps=3000, restarts=1)"
    )
    namespace = {"model": model, "x": data.train_x, "y": data.train_y, "x_heldout": data.pool_x[:300],
                 "pixel_mean": data.mean}  # fmt: skip
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].summary().identified >= 8
    assert namespace["short"].summary().verdict == "inconclusive"


TUTORIAL_SMALLER = {"range(100)": "range(30)", "OwnerAttack()": "OwnerAttack(steps=100, restarts=1)"}


@pytest.mark.slow
def test_the_readme_tutorial_script_is_audited_with_no_edits(tmp_path, monkeypatch):
    """The tutorial's training script and its audit, as written but shorter, then its command line."""
    training, audit = readme_python("### A tutorial training script, audited as it is")
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
    code = readme_python("### Record the training, audit in one call (Adam too)")[0]
    assert len(code.strip().splitlines()) <= 30
    namespace = run_in(tmp_path, monkeypatch, code, {"range(100)": "range(100)"})  # as written
    summary = namespace["result"].summary()
    assert namespace["result"].attack.name == "span" and summary.verdict in ("conclusive", "weak"), summary.finding
    assert summary.auc > 0.9 and (tmp_path / "record" / "manifest.json").is_file()
