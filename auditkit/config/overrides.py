"""Settings over settings: deep merging (a scenario over what it extends, ``--set`` over a file) and the
``--set key.path=value`` parser."""

from __future__ import annotations

import re
from typing import Any

from auditkit.attacks.registry import DEFAULT_ATTACK, attack_class
from auditkit.config.yaml_files import read_value
from auditkit.errors import ConfigError, ScenarioError


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` wins, mapping by mapping; a mapping given over an attack preset's name amends that preset,
    and an ``attack:`` naming another attack replaces the section (none of the first one's settings apply),
    unless that attack's config extends the first one's (the owner's attack takes every KKT setting)."""
    merged = dict(base)
    for key, value in override.items():
        if key == "attack" and isinstance(value, dict) and isinstance(merged.get(key), str):
            merged[key] = {"preset": merged[key]}
        if key == "attack" and isinstance(value, dict) and _replaces_section(value, merged.get(key)):
            merged[key] = {}  # another attack: none of the first one's settings apply
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _replaces_section(override: dict, base: Any) -> bool:
    """Whether an ``attack:`` override names another attack than ``base`` does (a preset given by name, or a
    section without a name, is the default attack's) whose settings are not a superset of the first one's."""
    current = base.get("name", DEFAULT_ATTACK) if isinstance(base, dict) else DEFAULT_ATTACK
    named = override.get("name", current)
    if named == current:
        return False
    try:
        return not issubclass(attack_class(named).config_type, attack_class(current).config_type)
    except ConfigError:  # an unknown name: the section is replaced, and its validation names the error
        return True


def parse_settings(items: list[str] | tuple[str, ...]) -> dict:
    """``--set key.path=value`` items as one nested override mapping (values read as YAML: 10, 1e-5, true, [1, 2])."""
    overrides: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if sep and any(part.isdigit() for part in parts):
            raise ScenarioError(
                f"--set {item!r}: a list item cannot be set by its index; set the whole list, e.g. "
                "defenses=[none, dp_eps8]"
            )
        if not sep or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) for part in parts):
            raise ScenarioError(f"--set {item!r}: expected key.path=value, e.g. data.n_per_class=10")
        value = read_value(text, f"--set {item!r}")
        target = overrides
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ScenarioError(f"--set {item!r}: '{part}' was already set to a value")
        target[parts[-1]] = value
    return overrides


def parse_arguments(arch: str | None, texts: list[str] | tuple[str, ...]) -> dict:
    """``--arch-arg KEY=VALUE`` items as keyword arguments for ``--arch``'s class (values read as YAML)."""
    if texts and arch is None:
        raise ConfigError("--arch-arg: give --arch module:Class for the arguments to go to")
    arguments = {}
    for text in texts:
        key, separator, value = text.partition("=")
        if not separator or not key.isidentifier():
            raise ConfigError(f"--arch-arg {text!r}: expected KEY=VALUE with KEY a Python name")
        try:
            arguments[key] = read_value(value, f"--arch-arg {key}") if value else ""
        except ScenarioError:
            raise ConfigError(f"--arch-arg {key}: {value!r} is not a YAML value") from None
    return arguments


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
