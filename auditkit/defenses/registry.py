"""The defense kinds by name: a scenario's ``defenses[*].kind`` resolves here at validation time.

``@register_defense`` adds a kind (a name already taken is refused unless forced); the built-in kinds register
when this module is first used.
"""

from __future__ import annotations

import importlib

from auditkit.defenses.base import Defense
from auditkit.registries import Registry

BUILTIN_MODULES = ("auditkit.defenses.recipe", "auditkit.defenses.dp_sgd")  # each registers its kinds

DEFENSES: Registry[type[Defense]] = Registry("defense kind")


def register_defense(defense: type[Defense] | None = None, *, force: bool = False):
    """Register a kind of defense under its ``name`` (a class decorator: ``@register_defense``, or
    ``@register_defense(force=True)`` to replace a kind registered under that name).

    Args:
        defense: a :class:`Defense` subclass with a ``name`` and a :meth:`Defense.train`.
        force: replace the kind registered under the name; by default a taken name is refused.

    Returns:
        The class, unchanged (without ``defense``: the decorator).

    Raises:
        TypeError: ``defense`` is not a named Defense subclass.
        ValueError: its name is taken by another kind and ``force`` is False.
    """

    return DEFENSES.class_decorator(Defense, defense, force)


def defense_names() -> list[str]:
    """The registered kinds' names, sorted."""
    _load_builtin()
    return sorted(DEFENSES)


def defense_kind(name: str) -> Defense:
    """The kind registered as ``name``; an unknown name raises ValueError listing the others (the scenario schema
    turns it into one line naming the field)."""
    _load_builtin()
    if name not in DEFENSES:
        raise ValueError(f"unknown defense kind {name!r}; registered: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name]()


def _load_builtin() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
