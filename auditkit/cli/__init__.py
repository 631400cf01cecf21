"""``auditkit`` command line: a thin skin over :mod:`auditkit.running.runner` and :class:`auditkit.AuditResult`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from auditkit.cli.options import (
    PRESETS_OPTION,
    SET_OPTION,
    CommonOptions,
    common_options,
    dp_options,
    output_folder,
    privacy_settings,
    scenario_overrides,
)
from auditkit.errors import AuditkitError, first_error

if TYPE_CHECKING:
    from auditkit.results.run import RunResult


def _fail(error: AuditkitError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


def _report_run(
    start: Callable[[], tuple[Path, RunResult]],
    on_interrupt: str,
    common: CommonOptions,
) -> None:
    """Run ``start`` (-> output folder, result); user errors in one line, then each victim's finding and,
    with ``--fail-if``, the release gate (exit code 1 with the reasons; 1 too when no victim was audited).
    ``--junit-xml`` and, when ``GITHUB_STEP_SUMMARY`` names a file, a Markdown summary for CI."""
    from auditkit.report.tables import headline
    from auditkit.running.gate import Condition, gate_failures

    try:
        conditions = [Condition.parse(text) for text in common.fail_if]
        out, result = start()
    except AuditkitError as error:
        _fail(error)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {on_interrupt}", err=True)
        sys.exit(130)
    reused = f"; {result.facts.reused} finished victim(s) reused" if result.facts.reused else ""
    click.echo(f"report written to {out} ({result.facts.seconds:.0f}s{reused})")
    for victim in result.victims:
        click.echo(f"  {headline(victim)}")
    for failure in result.failures:
        click.echo(f"  [{failure.name}] not audited: {failure.reason}")
    reasons = gate_failures(result, conditions, common.allow_inconclusive) if conditions else []
    _ci_outputs(result, reasons, bool(conditions), common.junit_xml)
    if result.failures and not result.victims:
        click.echo("error: no victim could be audited (see above); nothing was measured", err=True)
        sys.exit(1)
    for reason in reasons:
        click.echo(f"gate failed: {reason}", err=True)
    if reasons:
        sys.exit(1)
    if conditions:
        click.echo(f"gate passed: {' and '.join(f'not {c}' for c in conditions)}")


def _ci_outputs(result: RunResult, reasons: list[str], gated: bool, junit_xml: Path | None) -> None:
    """The JUnit XML file (atomic) and the GitHub job summary (appended, as GitHub reads it), when asked for."""
    import os

    from auditkit.report.ci import junit_xml as junit_document
    from auditkit.report.ci import step_summary
    from auditkit.storage.files import write_text

    try:
        if junit_xml is not None:
            write_text(junit_xml, junit_document(result, reasons))
            click.echo(f"JUnit XML written to {junit_xml}")
        if summary_file := os.environ.get("GITHUB_STEP_SUMMARY"):
            with open(summary_file, "a", encoding="utf-8") as summary:
                summary.write(step_summary(result, reasons, gated))
    except OSError as error:
        click.echo(f"error: {error.filename or junit_xml}: cannot write it ({error.strerror})", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="auditkit")
def main() -> None:
    """Privacy audits of PyTorch models: which training samples can be reconstructed from the weights."""


@main.command()
@click.argument("scenario")
@click.option("--out", callback=output_folder, help="output directory (default runs/SCENARIO_NAME)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="overrides the scenario's device")
@click.option("--seed", type=int, help="overrides the scenario's seed")
@click.option("--resume", is_flag=True, help="reuse finished audits in --out (victims are always cached)")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    help="where the victims run: one after another here, or as Ray tasks of --threads CPUs each (auditkit[ray])",
)
@click.option("--address", help="with --executor ray: an existing Ray cluster (default: start one on this machine)")
@SET_OPTION
@PRESETS_OPTION
@common_options
def run(
    scenario: str,
    out: Path | None,
    device: str | None,
    seed: int | None,
    resume: bool,
    executor: str,
    address: str | None,
    settings: tuple[str, ...],
    presets: Path | None,
    common: CommonOptions,
) -> None:
    """Train the scenario's victims (cached), attack each and write the leakage report.

    SCENARIO: a YAML file, or the name of a built-in scenario (``auditkit list``)."""
    from auditkit.config.loading import load_scenario
    from auditkit.running.runner import run_scenario

    def start() -> tuple[Path, RunResult]:
        resolved = load_scenario(scenario, scenario_overrides(seed, device, settings), presets)
        folder = out or Path("runs") / resolved.name
        common.set_threads()
        return folder, run_scenario(
            resolved,
            folder,
            resume=resume,
            progress=common.progress(),
            executor=executor,
            threads=common.threads,
            address=address,
        )

    interrupted = "finished victims and the attack's progress stay cached; rerun with --resume to continue"
    _report_run(start, interrupted, common)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True, help="training data (.npz)")
@click.option(
    "--features",
    is_flag=True,
    help="train_x and nonmember_x are embeddings (a head on frozen features): compared by cosine, the images behind "
    "them optional (train_images, nonmember_images; a file with them is read so without this flag)",
)
@click.option("--out", callback=output_folder, help="output directory (default runs/audit-MODEL_NAME)")
@click.option(
    "--attack", help="attack preset: a name (auditkit list) or a YAML file (default: kkt_quick; owner with --init)"
)
@click.option(
    "--init",
    "init_path",
    type=click.Path(path_type=Path),
    help="the weights training started from (a state_dict file, as MODEL): the owner's attack explains what "
    "training added to them",
)
@click.option(
    "--record",
    "record_path",
    type=click.Path(path_type=Path),
    help="a training record (auditkit.recording.TrainingRecorder's folder): the initial weights, the DP settings, "
    "Adam's rescaling undone",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0)
@click.option("--steps", type=click.IntRange(0, 100_000_000), help="attack steps per restart (overrides the preset)")
@click.option(
    "--arch",
    help="module:Class, your network class (a module importable from here, or nets.py:Class) that MODEL's "
    "state_dict loads into: needed for a CNN, whose state_dict does not say how it is wired",
)
@click.option(
    "--arch-arg",
    "arch_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="a keyword argument for --arch's class (repeatable; VALUE read as YAML: 8, 0.5, true, [1, 2])",
)
@dp_options
@SET_OPTION
@common_options
def audit(
    model: Path,
    data_path: Path,
    features: bool,
    out: Path | None,
    attack: str | None,
    init_path: Path | None,
    record_path: Path | None,
    arch: str | None,
    arch_args: tuple[str, ...],
    device: str,
    seed: int,
    steps: int | None,
    settings: tuple[str, ...],
    common: CommonOptions,
    dp: tuple[Path | None, dict],
) -> None:
    """Audit a model you trained: MODEL is its state_dict, a ``.safetensors`` file or
    ``torch.save(model.state_dict())`` (loaded with weights_only=True), or a training checkpoint holding it; DATA an
    .npz with train_x (the model's inputs), train_y and optionally nonmember_x (data never trained on: the
    membership test), test_x and test_y (held out, labelled: the test accuracy), mean and std (the inputs'
    normalisation of [0, 1] pixels), image_shape; for a head on frozen features (``--features``), embeddings and
    optionally the images behind them. ``--set attack.KEY=VALUE`` and ``--steps`` override the attack preset. ``--dp
    FILE`` or ``--dp-noise`` etc.: how a DP-SGD model was trained, for its epsilon and the DP ceiling. ``--init
    INIT``: the weights training started from (same formats): the owner's attack, for models trained the usual way
    (minibatch SGD, no weight decay), where the KKT attack's premise fails. ``--arch module:Class`` (with
    ``--arch-arg KEY=VALUE``): your network class, for a CNN or any ReLU network whose state_dict does not say how
    it is wired; a network that takes images reads train_x as flat rows of image_shape."""
    from auditkit.auditing.saved_model import audit_saved_model
    from auditkit.config.overrides import parse_arguments, parse_settings
    from auditkit.errors import ConfigError

    def start() -> tuple[Path, RunResult]:
        folder = out or Path("runs") / f"audit-{model.stem}"
        progress = common.progress()
        overrides = parse_settings(settings)
        if steps is not None:
            if "steps" in overrides.get("attack", {}):
                raise ConfigError("--steps and --set attack.steps: both give the attack's steps; give one")
            overrides.setdefault("attack", {})["steps"] = steps
        common.set_threads()
        arguments = parse_arguments(arch, arch_args)
        privacy = privacy_settings(dp)
        return folder, audit_saved_model(
            model,
            data_path,
            folder,
            attack,
            device,
            seed,
            progress,
            overrides,
            init_path,
            arch,
            arguments,
            privacy=privacy,
            record_path=record_path,
            features=features,
        )

    _report_run(start, "nothing was saved; run it again", common)


@main.command()
@click.argument("scenario")
@SET_OPTION
@PRESETS_OPTION
def validate(scenario: str, settings: tuple[str, ...], presets: Path | None) -> None:
    """Check a scenario (a file or a built-in name; presets resolved, data available) without training."""
    from auditkit.attacks.registry import build_attack
    from auditkit.config.loading import load_scenario
    from auditkit.running.jobs import plan_victims

    try:
        resolved = load_scenario(scenario, scenario_overrides(None, None, settings), presets)
        jobs = plan_victims(resolved)  # what `run` checks before training: data, DP plans, memory, every grid point
    except AuditkitError as error:
        _fail(error)
    attack = build_attack(resolved.attack)
    victims = len({job.victim for job in jobs})
    click.echo(
        f"{scenario}: ok ({resolved.name}: {victims} victim(s), {len(jobs)} audit(s), {attack.steps} attack steps)"
    )
    if warning := attack.warning():
        click.echo(warning, err=True)


@main.command(name="list")
@PRESETS_OPTION
def list_presets(presets: Path | None) -> None:
    """List data sets and the attack, defense and scenario presets (yours from --presets, then built-in)."""
    from auditkit.config.presets import BUILTIN_PRESETS, available, preset_dirs

    dirs = preset_dirs(None, presets)
    from auditkit.attacks.registry import attack_names
    from auditkit.data.datasets import DATASETS
    from auditkit.defenses.registry import defense_names

    click.echo("datasets:  " + ", ".join(f"{name} ({dataset.description})" for name, dataset in DATASETS.items()))
    click.echo(f"attack.name: {', '.join(attack_names())}")
    click.echo(f"defense kinds: {', '.join(defense_names())}")
    for kind, label in (("attack", "attacks"), ("defense", "defenses"), ("scenario", "scenarios")):
        click.echo(f"{label + ':':<10} {', '.join(available(dirs[kind])) or '(none)'}")
    click.echo(f"built-in presets: {BUILTIN_PRESETS}" + (f"; yours first: {presets}" if presets else ""))


def _grid_size(config: dict, run_dir: Path) -> int:
    """The PNG grid's size a run recorded (``report.grid_size``), checked as the scenario schema checks it."""
    from pydantic import ValidationError

    from auditkit.config.schema import ReportConfig
    from auditkit.results.storage import ResultError

    section = config.get("report", {}) if isinstance(config, dict) else None
    try:
        return ReportConfig.model_validate(section).grid_size
    except ValidationError as error:
        raise ResultError(f"{run_dir}: its recorded report settings are damaged ({first_error(error)})") from None


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(run_dir: Path) -> None:
    """Re-render the figures and report.html of a finished run from its saved results (no attack);
    RUN_DIR may also be one audit saved from Python (``result.save(RUN_DIR)``)."""
    from auditkit.report import REPORT_FILES, write_report
    from auditkit.results.run import RUN_FILE, RunResult
    from auditkit.storage.outdir import check_layout

    one_audit = not (run_dir / RUN_FILE).is_file()
    try:
        result = RunResult.load(run_dir)
        check_layout(run_dir, [], REPORT_FILES)
        grid_size = _grid_size(result.facts.config, run_dir)
        written = write_report(result, run_dir, grid_size, victim_folders=not one_audit)
    except AuditkitError as error:
        _fail(error)
    click.echo(f"re-rendered {written}")


def entry() -> None:
    """The ``auditkit`` command: :func:`main`, with an interrupt at any point (the imports of start-up too) ending
    in one line and exit code 130 instead of a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
