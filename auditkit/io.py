"""Atomic file output: a reader never sees a half-written file, an interrupted run leaves none behind."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from auditkit.errors import AuditkitError

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # names that become folder names: no separators, no '..'
Name = Annotated[str, Field(pattern=SAFE_NAME)]
TEMPORARY_SUFFIX = ".auditkit-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: outputs are as readable as the user's other files


def inside(root: str | Path, name: str) -> Path:
    """``root / name`` for a ``name`` that matches SAFE_NAME, checked to resolve inside ``root``."""
    if not isinstance(name, str) or not re.fullmatch(SAFE_NAME, name):
        raise AuditkitError(f"name {name!r} must match {SAFE_NAME} (it becomes a folder name)")
    path = Path(root) / name
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise AuditkitError(f"{path} resolves outside {root}")
    return path


def ensure_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` and check a file can be written in it, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise AuditkitError(f"{what} {folder}: not writable ({error.strerror or error})") from None
    return folder


def remove_temporaries(folder: str | Path, older_than: float = 0.0) -> int:
    """Delete temporary files an interrupted (killed) writer left under ``folder``; returns how many."""
    removed = 0
    for path in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}"):
        if time.time() - path.stat().st_mtime >= older_than:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json(path: str | Path, data: dict | list) -> None:
    write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def to_jsonable(value):
    """numpy scalars/arrays and NaN to plain JSON (NaN and inf become null)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
