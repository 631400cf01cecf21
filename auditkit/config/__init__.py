"""Configuration: the scenario schema, YAML presets and their lookup, overrides (``--set``), loading."""
