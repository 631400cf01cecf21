"""The memory budget: what a run would allocate, estimated from its settings and checked before anything is.

The limit is ``$AUDITKIT_MEMORY_GB`` when set, else half of this machine's physical memory. Each part sizes
itself (a data set from its config, a victim from its widths, an attack from its settings); this module only
holds the limit and the check.
"""

from __future__ import annotations

import os

from auditkit.errors import ConfigError

GIB = 2**30
SHARE_OF_MACHINE = 0.5  # the default limit: this fraction of the physical memory


def memory_limit() -> int:
    """The budget in bytes: ``$AUDITKIT_MEMORY_GB`` or half the machine's physical memory."""
    given = os.environ.get("AUDITKIT_MEMORY_GB")
    if given is not None:
        try:
            limit = float(given)
        except ValueError:
            limit = -1.0
        if not 0 < limit < 1e6:
            raise ConfigError(f"AUDITKIT_MEMORY_GB: expected a positive number of GiB, got {given!r}")
        return int(limit * GIB)
    return int(SHARE_OF_MACHINE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(parts: dict[str, int], what: str) -> None:
    """Refuse ``what`` when its parts (name -> bytes) add up to more than the budget.

    Args:
        parts: the estimated allocations, by what makes them.
        what: how the message names the job (a scenario, a grid point, an audit).
    """
    needed, limit = sum(parts.values()), memory_limit()
    if needed > limit:
        detail = ", ".join(f"{name} {size / GIB:.3g} GiB" for name, size in parts.items() if size)
        raise ConfigError(
            f"{what}: needs about {needed / GIB:.3g} GiB ({detail}), more than the {limit / GIB:.3g} GiB budget "
            "($AUDITKIT_MEMORY_GB, or half this machine's memory when it is unset): make the run smaller"
        )
