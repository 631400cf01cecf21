"""The project's own error types: what the CLI reports as a user error (one line, exit code 2).

Anything else is a bug in auditkit and keeps its traceback.
"""

from __future__ import annotations

from pydantic import ConfigDict, ValidationError

# every validated model: no unknown fields, no coercion (``true`` is not 1, "5" is not 5), no NaN/inf
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class AuditkitError(Exception):
    """Bad input from the user (a file, a field, a model, a setting); the message names which."""


class ConfigError(AuditkitError, ValueError):
    """A setting is out of its allowed range or of the wrong type; the message names the field."""


class ScenarioError(ConfigError):
    """A scenario file is invalid; the message names the file or field and what is allowed."""


class DataError(AuditkitError, ValueError):
    """Data that cannot be audited (missing file, wrong shape, labels the model cannot take); the message says which."""


class UnsupportedModelError(AuditkitError, ValueError):
    """A model the attack cannot run on (an unsupported layer, a shape that does not match the data)."""


def first_error(error: ValidationError, prefix: str = "") -> str:
    """One line for a pydantic error: ``field.path: what is wrong`` (and how many more problems)."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in (*([prefix] if prefix else []), *item["loc"])) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        whole_model_check = item["type"] == "value_error" and not item["loc"] and not prefix
        named = message.startswith((f"{location}.", f"{location}:"))  # a nested check already named the field
        lines.append(message if whole_model_check or named else f"{location}: {message}")
    extra = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0] + extra
