"""A package's exported names, imported from the modules that define them on first use (importing the package
stays fast, and no package pulls in torch before something asks for it)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import import_module


def lazy_exports(
    namespace: dict, exports: dict[str, tuple[str, ...]], moved: dict[str, str] | None = None
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package that exports names lazily.

    Args:
        namespace: the package's ``globals()`` (a name is kept there once imported).
        exports: module -> the names it defines that the package exports.
        moved: name -> the package that exports it now; reading it here still works, with a DeprecationWarning
            saying where it lives.

    Returns:
        ``(__getattr__, __dir__, __all__)`` for the package to assign.
    """
    home = {name: module for module, names in exports.items() for name in names}
    moved = moved or {}
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name in moved:
            warnings.warn(
                f"{package}.{name} moved to {moved[name]}.{name}; import it from there",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(import_module(moved[name]), name)
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(home[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *home])

    return __getattr__, __dir__, sorted(home)
