"""Presets: the built-in and user folders of scenarios/, attacks/ and defenses/, looked up by name, and a
scenario's presets and ``extends:`` chain resolved into one mapping.

A scenario may ``extends:`` another one (deep-merged), name an attack preset (``attacks/NAME.yaml``) and
defense presets (``defenses/NAME.yaml``), or give them inline. Presets are looked up in a user's
``--presets`` folder, beside the scenario's folder, then among the built-in ones shipped in the package.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

from auditkit.config.overrides import deep_merge, short
from auditkit.config.yaml_files import read_yaml
from auditkit.errors import AuditkitError, ScenarioError, first_error
from auditkit.storage.files import SAFE_NAME

MAX_EXTENDS_DEPTH = 8


def _builtin_presets() -> Path:
    """Where the built-in presets are: an installed wheel's copy under auditkit/presets/, or, in a source
    checkout (an editable install included), the repository's own scenarios/, attacks/ and defenses/."""
    package = Path(str(importlib.resources.files("auditkit")))
    return package / "presets" if (package / "presets").is_dir() else package.parent


BUILTIN_PRESETS = _builtin_presets()
FOLDERS = {"attack": "attacks", "defense": "defenses", "scenario": "scenarios"}


def preset_dirs(scenario_path: Path | None = None, presets: Path | None = None) -> dict[str, list[Path]]:
    """Where each kind of preset is looked up, first match first: ``presets`` (a folder holding attacks/,
    defenses/, scenarios/), the folders beside the scenario's own folder, then the built-in presets."""
    roots = [presets] if presets is not None else []
    if scenario_path is not None:
        roots.append(scenario_path.resolve().parent.parent)
    roots.append(BUILTIN_PRESETS)
    dirs = {kind: [root / folder for root in roots] for kind, folder in FOLDERS.items()}
    if scenario_path is not None:  # a scenario's siblings, whatever its folder is called
        dirs["scenario"].insert(1 if presets is not None else 0, scenario_path.resolve().parent)
    return {kind: list(dict.fromkeys(folders)) for kind, folders in dirs.items()}


def available(folders: list[Path]) -> list[str]:
    """The preset names found in ``folders``."""
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def find_preset(name: str, folders: list[Path]) -> Path | None:
    """The first ``NAME.yaml`` in ``folders`` (``name`` already checked against SAFE_NAME)."""
    return next((folder / f"{name}.yaml" for folder in folders if (folder / f"{name}.yaml").is_file()), None)


def preset_settings(kind: str, name: Any, folders: list[Path], field: str) -> dict:
    """The settings of the ``kind`` preset ``name`` found in ``folders``; errors name ``field``."""
    if not isinstance(name, str):
        raise ScenarioError(f"{field}: expected a preset name or a mapping, got {short(name)}")
    if not re.fullmatch(SAFE_NAME, name):
        raise ScenarioError(f"{field}: preset name {short(name)} must match {SAFE_NAME}")
    path = find_preset(name, folders)
    if path is None:
        names = ", ".join(available(folders)) or "none found"
        raise ScenarioError(f"{field}: unknown {kind} preset '{name}'; allowed: {names}")
    settings = read_yaml(path, allow_empty=True)
    _check_preset(kind, name, settings, path)
    return settings


def _check_preset(kind: str, name: str, settings: dict, path: Path) -> None:
    """A preset valid on its own, or a :class:`ScenarioError` naming the preset's file (not the scenario using it)."""
    from pydantic import ValidationError

    from auditkit.attacks.registry import attack_config
    from auditkit.config.schema import DefenseConfig

    try:
        if kind == "attack":
            attack_config(settings, field="attack")
        elif kind == "defense":
            DefenseConfig.model_validate({"name": name, **settings})
    except ValidationError as error:
        raise ScenarioError(f"{path}: {first_error(error)}") from None
    except AuditkitError as error:
        raise ScenarioError(f"{path}: {error}") from None


def raw_scenario(path: Path, dirs: dict[str, list[Path]], seen: tuple[Path, ...] = ()) -> dict:
    """A scenario file's mapping with its ``extends:`` chain merged in (parents first)."""
    raw = read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise ScenarioError(f"{path}: extends: expected the name or path of a scenario, got {short(parent)}")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ScenarioError(f"{path}: extends: more than {MAX_EXTENDS_DEPTH} levels of 'extends'")
    beside = (path.parent / parent).resolve()
    beside = beside if beside.suffix == ".yaml" else beside.with_suffix(".yaml")
    by_name = find_preset(parent, dirs["scenario"]) if re.fullmatch(SAFE_NAME, parent) else None
    parent_path = beside if beside.is_file() or by_name is None else by_name.resolve()
    if parent_path in seen:
        raise ScenarioError(f"{path}: extends: '{parent}' is circular")
    if not parent_path.is_file():
        names = ", ".join(available(dirs["scenario"]))
        raise ScenarioError(f"{path}: extends: scenario '{parent}' not found; allowed: {names}")
    return deep_merge(raw_scenario(parent_path, dirs, (*seen, path.resolve())), raw)


def resolve(raw: dict, dirs: dict[str, list[Path]]) -> dict:
    """Replace preset names by their contents (``attack: NAME`` or ``{preset: NAME, ...overrides}``)."""
    resolved = dict(raw)
    attack = resolved.get("attack")
    if attack is not None:
        if isinstance(attack, dict) and "preset" in attack:
            overrides = {k: v for k, v in attack.items() if k != "preset"}
            attack = deep_merge(preset_settings("attack", attack["preset"], dirs["attack"], "attack.preset"), overrides)
        elif not isinstance(attack, dict):
            attack = preset_settings("attack", attack, dirs["attack"], "attack")
        resolved["attack"] = attack
    defenses = resolved.get("defenses", ["none"])
    if not isinstance(defenses, list):
        raise ScenarioError(f"defenses: expected a list of preset names or mappings, got {short(defenses)}")
    resolved_defenses = []
    for index, defense in enumerate(defenses):
        if isinstance(defense, dict):
            if "preset" in defense:
                overrides = {k: v for k, v in defense.items() if k != "preset"}
                base = preset_settings("defense", defense["preset"], dirs["defense"], f"defenses.{index}.preset")
                defense = {"name": defense["preset"], **deep_merge(base, overrides)}
            resolved_defenses.append(defense)
        else:
            preset = preset_settings("defense", defense, dirs["defense"], f"defenses.{index}")
            resolved_defenses.append({"name": defense, **preset})
    resolved["defenses"] = resolved_defenses
    return resolved


def attack_preset(attack: str | Path) -> dict:
    """An attack preset's settings from a YAML file, or from a preset's name (built-in or beside the cwd)."""
    path = Path(attack)
    if path.is_file() or not re.fullmatch(SAFE_NAME, str(attack)):
        return read_yaml(path, allow_empty=True)
    return preset_settings("attack", str(attack), preset_dirs()["attack"], "--attack")
