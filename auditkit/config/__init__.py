"""Configuration: the scenario schema, YAML presets and their lookup, overrides (``--set``), loading."""

from auditkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(), {"auditkit.config.schema": ("Scenario",), "auditkit.config.loading": ("load_scenario",)}
)
