"""Files and folders the tool writes: atomic outputs (a reader never sees a half-written file), names
checked before they become paths, writability checked before work, leftovers of killed writers removed."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from auditkit.errors import AuditkitError, ConfigError

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # names that become folder names: no separators, no '..'
Name = Annotated[str, Field(pattern=SAFE_NAME)]
TEMPORARY_SUFFIX = ".auditkit-tmp"


def _file_mode() -> int:
    """What open() would give a new file under the current umask (mkstemp gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def inside(root: str | Path, name: str) -> Path:
    """``root / name`` for a ``name`` that matches SAFE_NAME, checked to resolve inside ``root``."""
    if not isinstance(name, str) or not re.fullmatch(SAFE_NAME, name):
        raise AuditkitError(f"name {name!r} must match {SAFE_NAME} (it becomes a folder name)")
    path = Path(root) / name
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise AuditkitError(f"{path} resolves outside {root}")
    return path


def recorded_path(path: str | Path) -> str:
    """How an input file is named in saved results and reports: relative to the current folder when it lies
    under it, else its name alone (an absolute path would show the user's machine to whoever reads them)."""
    resolved = Path(path).resolve()
    here = Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else resolved.name


def cache_folder(kind: str) -> Path:
    """Where auditkit caches one ``kind`` of work (victims, backbones, attacks): ``$AUDITKIT_CACHE/KIND``, by
    default ``~/.cache/auditkit/KIND``."""
    folder = os.environ.get("AUDITKIT_CACHE", str(Path.home() / ".cache" / "auditkit"))
    if not folder.strip():
        raise ConfigError(
            "AUDITKIT_CACHE is set but empty (it would cache into the current folder): unset it or name a folder"
        )
    return Path(folder) / kind


def ensure_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` and check a file can be written in it, before any work is done."""
    folder = Path(folder)
    try:
        os.stat(folder)
    except FileNotFoundError:
        if folder.is_symlink():
            raise AuditkitError(f"{what} {folder}: a symbolic link to nothing ({os.readlink(folder)})") from None
    except OSError as error:  # a link loop, a name the file system refuses
        raise AuditkitError(f"{what} {folder}: not writable ({error.strerror or error})") from None
    if folder.exists() and not folder.is_dir():
        raise AuditkitError(f"{what} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise AuditkitError(f"{what} {folder}: not writable ({error.strerror or error})") from None
    return folder


def remove_temporaries(folder: str | Path, every: bool = False) -> int:
    """Delete the temporary files killed writers left under ``folder`` (their process is gone), or
    ``every`` one (when this process holds the folder); returns how many."""
    removed = 0
    for path in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}"):
        if every or not _alive(path.name[: -len(TEMPORARY_SUFFIX)].rsplit(".", 2)[-2]):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: str) -> bool:
    """Whether process ``pid`` (as written in a temporary file's name) still runs on this machine."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds (a folder at
    ``path`` is refused before the block runs: the work would be lost at the rename)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise AuditkitError(f"{path}: a folder where a file is to be written: move it")
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}."  # the writer's pid: a killed writer's leftovers can be told apart
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TEMPORARY_SUFFIX)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _file_mode())  # as readable as the user's other files
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json(path: str | Path, data: dict | list) -> None:
    """Write ``data`` as indented JSON (NaN as null) to ``path`` atomically."""
    write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as a compressed .npz to ``path`` atomically."""
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
