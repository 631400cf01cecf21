"""A run's output folder: checked writable before any work, its layout checked against what the run will write
there, one run at a time (a lock that names its holder), cleared of the temporary files an interrupted run
left behind."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from auditkit.errors import AuditkitError
from auditkit.storage.files import ensure_writable, inside, remove_temporaries, write_json

LOCK_FILE = ".auditkit.lock"
OWNER_FILE = ".auditkit.lock.json"


class OutputInUseError(AuditkitError):
    """Another auditkit run holds the output folder."""


@contextmanager
def exclusive_output(out: str | Path) -> Iterator[Path]:
    """Hold ``out`` for this run: fail at once, naming the holder, if another run has it."""
    out = ensure_writable(out, "output folder")
    lock = FileLock(out / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputInUseError(f"output folder {out} is in use by another auditkit run ({_holder(out)})") from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(out / OWNER_FILE, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        remove_temporaries(out, every=True)  # no other run writes here while we hold the lock
        yield out
    finally:
        (out / OWNER_FILE).unlink(missing_ok=True)
        lock.release()


def check_layout(out: Path, folders: Iterable[str], files: Iterable[str]) -> None:
    """Before any work: each victim folder the run writes is inside ``out`` and a folder or not there yet,
    and no file the run writes at the top of ``out`` is a folder (else the work would be lost at the end)."""
    for name in folders:
        path = inside(out, name)
        if path.exists() and not path.is_dir():
            raise AuditkitError(
                f"{path}: exists and is not a folder, but victim {name}'s audit is written there: move it or "
                "choose another --out"
            )
    for name in files:
        if (out / name).is_dir():
            raise AuditkitError(f"{out / name}: a folder where the run writes a file: move it or choose another --out")


def _holder(out: Path) -> str:
    try:
        owner = json.loads((out / OWNER_FILE).read_text())
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
