"""The command line's shared options: output folders, overrides, threads and progress, the release gate and its
CI outputs, and the DP settings of a model trained elsewhere."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

DP_KEYS = {  # option: the key of a --dp file and of Auditor.audit's privacy mapping
    "dp_noise": "noise_multiplier",
    "dp_sample_rate": "sample_rate",
    "dp_steps": "steps",
    "delta": "delta",
    "accountant": "accountant",
    "dp_max_grad_norm": "max_grad_norm",
}
DP_REQUIRED = ("noise_multiplier", "sample_rate", "steps", "delta")


def output_folder(context: click.Context, parameter: click.Parameter, value: str | None) -> Path | None:
    """An output folder option as a Path; an empty one would mean the current folder, so it is refused."""
    if value is not None and not value.strip():
        raise click.BadParameter("an empty path (it would write into the current folder); name a folder")
    return None if value is None else Path(value)


def scenario_overrides(seed: int | None, device: str | None, settings: tuple[str, ...]) -> dict:
    """--set values, then --seed and --device (which win)."""
    from auditkit.config.overrides import parse_settings

    overrides = parse_settings(settings)
    if seed is not None:
        overrides["seed"] = seed
    if device is not None:
        overrides["device"] = device
    return overrides


@dataclass(frozen=True)
class CommonOptions:
    """What ``run`` and ``audit`` share: torch threads, progress output, the release gate and its CI outputs."""

    threads: int | None
    quiet: bool
    bars: bool
    fail_if: tuple[str, ...]
    allow_inconclusive: bool
    junit_xml: Path | None

    def progress(self):
        """The progress display these options ask for."""
        from auditkit.progress import Progress

        return Progress(not self.quiet, self.bars or None)

    def set_threads(self) -> None:
        """torch's CPU threads, when ``--threads`` was given."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)


def common_options(command: Callable) -> Callable:
    """Options shared by ``run`` and ``audit`` (threads, progress, the release gate and its CI outputs), passed to
    ``command`` as one :class:`CommonOptions` named ``common``."""
    options = [
        click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for torch (in summary.json)"),
        click.option("--quiet", is_flag=True, help="no progress output"),
        click.option("--progress", "bars", is_flag=True, help="progress bars even when not writing to a terminal"),
        click.option(
            "--fail-if",
            "fail_if",
            multiple=True,
            metavar="'METRIC OP NUMBER'",
            help="release gate: exit 1 when this holds for a victim, e.g. 'identified_fraction > 0.05' (repeatable)",
        ),
        click.option(
            "--allow-inconclusive", is_flag=True, help="with --fail-if: pass a victim whose verdict is not conclusive"
        ),
        click.option(
            "--junit-xml",
            "junit_xml",
            type=click.Path(path_type=Path, dir_okay=False),
            help="write a JUnit XML file (one test case per audit; failed by --fail-if) for CI test reporting",
        ),
    ]

    @functools.wraps(command)
    def with_common(*args, **kwargs):
        given = {field: kwargs.pop(field) for field in CommonOptions.__dataclass_fields__}
        return command(*args, common=CommonOptions(**given), **kwargs)

    for option in reversed(options):
        with_common = option(with_common)
    return with_common


def dp_options(command: Callable) -> Callable:
    """The DP-SGD settings a model was trained with elsewhere (a --dp YAML file and/or one option each, the
    options winning), passed to ``command`` as one ``dp`` mapping of the options given."""
    options = [
        click.option(
            "--dp",
            "dp_file",
            type=click.Path(path_type=Path),
            help="a YAML file of the DP-SGD settings training used: noise_multiplier, sample_rate, steps, delta "
            "(and accountant, max_grad_norm)",
        ),
        click.option("--dp-noise", type=float, help="DP-SGD's noise multiplier (sigma)"),
        click.option("--dp-sample-rate", type=float, help="DP-SGD's sampling rate (batch size / dataset size)"),
        click.option("--dp-steps", type=int, help="DP-SGD's optimiser steps"),
        click.option("--dp-max-grad-norm", type=float, help="DP-SGD's clipping norm (recorded)"),
        click.option("--delta", type=float, help="the delta the epsilon is stated at"),
        click.option("--accountant", type=click.Choice(["rdp", "prv", "gdp"]), help="the accountant (default rdp)"),
    ]

    @functools.wraps(command)
    def with_dp(*args, dp_file: Path | None, **kwargs):
        given = {key: kwargs.pop(option) for option, key in DP_KEYS.items()}
        return command(*args, dp=(dp_file, {key: value for key, value in given.items() if value is not None}), **kwargs)

    for option in reversed(options):
        with_dp = option(with_dp)
    return with_dp


def privacy_settings(dp: tuple[Path | None, dict]):
    """The :class:`auditkit.results.facts.PrivacyFacts` of ``--dp FILE`` and the DP options (which win over the
    file), or None when neither was given; a missing setting or a value out of range is named in one line as
    the option, or the file's key, it came from."""
    from pydantic import ValidationError

    from auditkit.config.yaml_files import read_yaml
    from auditkit.errors import ConfigError
    from auditkit.victims.dp import DPTrainingSettings, privacy_facts

    path, given = dp
    settings = {**(read_yaml(path) if path is not None else {}), **given}
    if not settings:
        return None
    options = {key: "--" + option.replace("_", "-") for option, key in DP_KEYS.items()}
    if missing := [key for key in DP_REQUIRED if key not in settings]:
        raise ConfigError(
            f"{', '.join(options[key] for key in missing)}: missing; the DP ceiling needs the noise multiplier, "
            "sample rate, steps and delta (options, or keys of a --dp file)"
        )
    try:
        DPTrainingSettings.model_validate(settings)
    except ValidationError as error:
        item = error.errors()[0]
        key = str(item["loc"][0]) if item["loc"] else ""
        where = options[key] if key in given else f"{path}: {key}"
        problem = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {problem}") from None
    return privacy_facts(settings)


PRESETS_OPTION = click.option(
    "--presets",
    type=click.Path(path_type=Path, file_okay=False),
    help="a folder with attacks/, defenses/, scenarios/ searched before the built-in presets",
)
SET_OPTION = click.option(
    "--set", "settings", multiple=True, metavar="KEY.PATH=VALUE", help="override one setting (repeatable)"
)
