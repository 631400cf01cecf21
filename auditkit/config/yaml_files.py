"""Reading YAML settings safely: a size limit, no duplicate keys, ``1e-5`` read as a number, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from auditkit.errors import ScenarioError
from auditkit.storage.safe_load import not_a_file

MAX_FILE_BYTES = 1_000_000  # a scenario or preset larger than this is refused before parsing
MAX_NODES = 10_000  # values and keys a file may hold: the work of reading and validating it stays bounded


class SafeYAMLLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys and aliases (``*name``: a few lines of them expand to
    gigabytes) and reads ``1e-5`` as a number (YAML 1.1 needs ``1.0e-5``)."""

    def compose_node(self, parent, index):
        """A node; an alias is refused before anything is expanded, and a file of more than MAX_NODES."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed; write the values out", mark)
        self.nodes = getattr(self, "nodes", 0) + 1
        if self.nodes > MAX_NODES:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_NODES:,} keys and values", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        """A mapping, refused when a key appears twice."""
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        seen, twice = set(), set()
        for key in keys:
            try:
                (twice if key in seen else seen).add(key)
            except TypeError:  # an unhashable key: the loader refuses it below
                continue
        duplicated = sorted(str(k) for k in twice)
        if duplicated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key(s) {', '.join(duplicated)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


SafeYAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.?[0-9]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path, allow_empty: bool = False) -> dict:
    """A YAML mapping; an empty file is an error unless ``allow_empty`` (a preset that changes no default)."""
    if not path.is_file():
        raise ScenarioError(f"{path}: {not_a_file(path)}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_FILE_BYTES} a scenario may have")
    try:
        content = yaml.load(path.read_bytes(), Loader=SafeYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise ScenarioError(f"{path}: not valid YAML ({one_line(error)})") from None
    if content is None:
        if allow_empty:
            return {}
        raise ScenarioError(f"{path}: the file is empty (a scenario needs at least its defenses)")
    if not isinstance(content, dict):
        raise ScenarioError(f"{path}: expected a mapping of fields, got {type(content).__name__}")
    return content


def one_line(error: Exception) -> str:
    """An error message on one line, at most 300 characters."""
    return " ".join(str(error).split())[:300]


def read_value(text: str, what: str):
    """One YAML value (``10``, ``1e-5``, ``true``, ``[1, 2]``, a string), as ``--set`` takes it."""
    try:
        return yaml.load(text, Loader=SafeYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{what}: the value is not valid YAML ({one_line(error)})") from None
