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


def python_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs_and_its_result_renders(tmp_path, monkeypatch):
    code = python_example()
    for text, smaller in SMALLER.items():
        assert code.count(text) == 1, f"the README example no longer has {text!r}: update this test"
        code = code.replace(text, smaller)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["summary"].n == 10 and len(namespace["frame"]) == 10
    result = CliRunner().invoke(main, ["report", "runs/mine"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "runs" / "mine" / "report.html").read_text()
    assert namespace["summary"].finding.split(".")[0] in page
    assert (tmp_path / "runs" / "mine" / "reconstructions.png").is_file()
    assert not (tmp_path / "runs" / "mine" / "victim").exists()


def pytest_example() -> str:
    section = README.read_text().split("### Checks in pytest", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_pytest_example_runs_with_its_helper_signature(small_victim):
    """The example as written, on the 20-digit victim (its full attack at one restart: 20 of 20 measured)."""
    model, data = small_victim
    code = pytest_example().replace("KKTAttack(steps=3000)", "KKTAttack(steps=3000, restarts=1)")
    namespace = {"model": model, "x": data.train_x, "y": data.train_y, "x_heldout": data.pool_x[:300],
                 "pixel_mean": data.mean}  # fmt: skip
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].summary().identified >= 8
    assert namespace["short"].summary().verdict == "inconclusive"
