"""The attacks by name: a scenario's ``attack:`` (and ``auditkit audit --attack``) resolve here.

``@register_attack`` adds a class (a name already taken is refused unless forced); the built-in attacks register
when this module is first used. A
scenario's ``attack:`` mapping is validated by the config of the attack its ``name`` names (``kkt`` when
it names none, so files written before there was a choice stay valid).
"""

from __future__ import annotations

import importlib

from auditkit.attacks.base import Attack, AttackConfig, AttackFacts
from auditkit.errors import ConfigError
from auditkit.registries import Registry

DEFAULT_ATTACK = "kkt"
BUILTIN_MODULES = (
    "auditkit.attacks.kkt.attack",
    "auditkit.attacks.owner.attack",
    "auditkit.attacks.span.attack",
)  # imported on first use: each registers its attack

ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(attack: type[Attack] | None = None, *, force: bool = False):
    """Register ``attack`` under its ``name`` (a class decorator: ``@register_attack``, or
    ``@register_attack(force=True)`` to replace an attack registered under that name).

    Args:
        attack: an :class:`Attack` subclass with ``name``, ``config_type`` and ``facts_type``.
        force: replace the attack registered under the name; by default a taken name is refused.

    Returns:
        The class, unchanged (without ``attack``: the decorator).

    Raises:
        TypeError: ``attack`` is not a named Attack subclass.
        ValueError: its name is taken by another attack and ``force`` is False.
    """

    return ATTACKS.class_decorator(Attack, attack, force)


def attack_names() -> list[str]:
    """The registered attacks' names.

    Returns:
        The names, sorted (what ``attack.name`` and ``--attack`` accept).
    """
    _load_builtin()
    return sorted(ATTACKS)


def attack_class(name: str, field: str = "attack.name") -> type[Attack]:
    """The attack registered as ``name``; an unknown name raises :class:`ConfigError` listing the others."""
    _load_builtin()
    if not isinstance(name, str) or name not in ATTACKS:
        raise ConfigError(f"{field}: unknown attack {name!r}; registered: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def attack_config(values: dict | AttackConfig | None = None, field: str = "attack") -> AttackConfig:
    """The validated config of the attack ``values["name"]`` names (the default attack's when it names none).

    Args:
        values: a mapping of settings, or a config already validated.
        field: how errors name the section.

    Returns:
        The attack's own config type, frozen.
    """
    if isinstance(values, AttackConfig):
        return values
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{field}: expected a mapping of attack settings, got {type(values).__name__}")
    values = {"name": DEFAULT_ATTACK, **values}
    return attack_class(values["name"], f"{field}.name").config_type.validated(values, field)


def build_attack(config: dict | AttackConfig | None = None) -> Attack:
    """The attack a config (or a mapping of settings) describes.

    Args:
        config: a mapping of settings (``{"name": "span", ...}``; the default attack's when it names none), or a
            validated config.

    Returns:
        The attack, ready to run.

    Raises:
        ConfigError: naming the setting that is not valid.

    Example:
        >>> build_attack({"name": "kkt", "steps": 300}).steps
        300
    """
    config = attack_config(config or {})
    return attack_class(config.name)(config)


def facts_from_dict(values: dict) -> AttackFacts:
    """Saved attack facts, read back as the facts type of the attack they name."""
    return attack_class(values.get("name", DEFAULT_ATTACK)).facts_type.from_dict(values)


def _load_builtin() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
