"""Registries by name (attacks, data sets): one entry per name, a name already taken refused unless forced."""

from __future__ import annotations

from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(dict[str, Entry], Generic[Entry]):
    """Name -> entry, for one ``kind`` of thing (its word in messages).

    Example:
        >>> attacks = Registry("attack")
        >>> attacks.add("kkt", object)
        >>> attacks.add("kkt", int)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: attack 'kkt' is registered already ...
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry: Entry, *, force: bool = False) -> None:
        """Register ``entry`` under ``name``.

        Args:
            name: the name scenarios and commands use.
            entry: what it names.
            force: replace an entry registered under ``name`` (by default a taken name is refused, so that two
                plugins cannot silently shadow each other; the same entry registered again is accepted, as when its
                module is imported twice).

        Raises:
            ValueError: ``name`` is taken by another entry and ``force`` is False.
        """
        taken = self.get(name)
        if taken is not None and not force and _identity(taken) != _identity(entry):
            raise ValueError(
                f"{self.kind} {name!r} is registered already ({_identity(taken)}); choose another name, or pass "
                "force=True to replace it"
            )
        self[name] = entry

    def class_decorator(self, base: type, cls: type | None, force: bool):
        """What a ``register_*`` decorator returns: ``cls`` registered under its ``name`` (checked to be a named
        subclass of ``base``), or, without ``cls``, the decorator that registers one (``@register_x(force=True)``).

        Args:
            base: the class every entry subclasses.
            cls: the class to register now, or None.
            force: replace an entry registered under the name.

        Returns:
            The class, unchanged (without ``cls``: the decorator).

        Raises:
            TypeError: not a subclass of ``base`` with a name.
            ValueError: its name is taken (see :meth:`add`).
        """

        def register(entry: type) -> type:
            if (
                not isinstance(entry, type)
                or not issubclass(entry, base)
                or not isinstance(getattr(entry, "name", None), str)
            ):
                raise TypeError(f"{entry!r}: a {self.kind} is a {base.__name__} subclass with a name")
            self.add(entry.name, entry, force=force)
            return entry

        return register if cls is None else register(cls)


def _identity(entry) -> str:
    """What makes two entries the same: a class or function's module and qualified name (one defined twice by a
    re-imported module is the same), any other object itself."""
    module, name = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(entry)
