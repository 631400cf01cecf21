"""Loading a scenario: a file or a built-in name, composed from its presets, overridden, validated."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from auditkit.config.overrides import deep_merge
from auditkit.config.presets import available, find_preset, preset_dirs, raw_scenario, resolve
from auditkit.config.schema import Scenario
from auditkit.errors import ScenarioError, first_error
from auditkit.storage.files import SAFE_NAME
from auditkit.storage.safe_load import not_a_file


def validate(raw: dict, source: str = "scenario") -> Scenario:
    """The scenario model of ``raw``, every grid point checked too; errors name ``source`` and the field."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(f"{source}: {first_error(error)}") from None
    try:
        scenario.grid_points()
    except ScenarioError as error:
        raise ScenarioError(f"{source}: {error}") from None
    return scenario


def scenario_path(scenario: str | Path, presets: Path | None = None) -> Path:
    """A scenario file, or the name of a scenario in ``presets`` or among the built-in ones."""
    if not str(scenario).strip():
        raise ScenarioError("scenario: empty; give a YAML file or the name of a built-in scenario (auditkit list)")
    path = Path(scenario)
    try:
        path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13)
        raise ScenarioError(f"{path}: {not_a_file(path)}") from None
    if path.is_file() or not re.fullmatch(SAFE_NAME, str(scenario)) or path.suffix == ".yaml":
        return path
    found = find_preset(str(scenario), preset_dirs(None, presets)["scenario"])
    if found is None:
        names = ", ".join(available(preset_dirs(None, presets)["scenario"]))
        raise ScenarioError(f"{scenario}: no such file, and no scenario of that name; built-in: {names}")
    return found


def load_scenario(scenario: str | Path, overrides: dict | None = None, presets: Path | None = None) -> Scenario:
    """Read, compose and validate a scenario.

    Args:
        scenario: a YAML file, or a scenario's name (see :func:`scenario_path`).
        overrides: settings that win over the file (seed, device, ``--set`` values), as nested mappings.
        presets: a folder of your presets (``attacks/``, ``defenses/``, ``scenarios/``), searched before the
            built-in ones.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: naming the file and field of any setting that is not valid.

    Example:
        >>> load_scenario("mnist_quick", {"seed": 1}).seed
        1
    """
    path = scenario_path(scenario, presets)
    dirs = preset_dirs(path, presets)
    raw = raw_scenario(path, dirs)
    raw.setdefault("name", path.stem)
    try:
        return validate(resolve(deep_merge(raw, overrides or {}), dirs), str(path))
    except ScenarioError as error:
        if not overrides or not _valid(raw, dirs, str(path)):
            raise
        # the file alone is valid: the mistake is in the overrides, so they are what the message names
        raise ScenarioError(
            str(error).replace(f"{path}: ", "settings given over the file (--set, --seed, --device): ", 1)
        ) from None


def _valid(raw: dict, dirs: dict[str, list[Path]], source: str) -> bool:
    """Whether ``raw`` validates without overrides."""
    try:
        validate(resolve(raw, dirs), source)
    except ScenarioError:
        return False
    return True
