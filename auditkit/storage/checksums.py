"""A finished folder's checksums: written last, and checked before anything they cover is reported or reused.

``SHA256SUMS`` lists the SHA-256 of every file of the folder's result, one ``HASH  NAME`` line each (the format
of ``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks it by hand too). A folder whose listed files do not
hash to what it says, to the byte, or that has no such list, was changed after it was written, or never
finished: its result is audited again (``--resume``) or refused (``report``), never read as it stands.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from auditkit.storage.files import write_text

CHECKSUM_FILE = "SHA256SUMS"
LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9_.-]+)")
CHUNK = 1 << 20


def file_hash(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _text(hashes: dict[str, str]) -> str:
    """The checksum list of name -> hash, sorted by name."""
    return "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))


def write_checksums(folder: str | Path, names: Sequence[str]) -> None:
    """Write the checksum list of ``names`` (files of ``folder``), atomically: the last file of a result."""
    folder = Path(folder)
    write_text(folder / CHECKSUM_FILE, _text({name: file_hash(folder / name) for name in names}))


def verify_checksums(folder: str | Path, names: Sequence[str], error: type[Exception]) -> None:
    """Refuse ``folder`` unless its checksum list covers exactly ``names`` and each file still hashes to it.

    Args:
        folder: a finished result's folder.
        names: the files the result is read from.
        error: the exception raised, with one line naming the file.
    """
    folder = Path(folder)
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        raise error(
            f"{path}: not found, so nothing vouches that the result was not changed after it was written (an "
            "audit that did not finish, or one saved by an auditkit that wrote no checksums): audit again"
        )
    stored = path.read_bytes()
    try:
        listed = dict(reversed(LINE.fullmatch(line).groups()) for line in stored.decode().splitlines())
    except (UnicodeDecodeError, AttributeError):
        raise error(f"{path}: not a list of 'SHA256  NAME' lines: audit again") from None
    if sorted(listed) != sorted(names):
        raise error(f"{path}: lists {', '.join(sorted(listed)) or 'nothing'}, not the result's files: audit again")
    for name in sorted(names):
        if not (folder / name).is_file():
            raise error(f"{folder / name}: not found")
        if file_hash(folder / name) != listed[name]:
            raise error(
                f"{folder / name}: changed since the audit wrote it (its SHA-256 is not the one in {CHECKSUM_FILE}): "
                "auditkit reports only results it can vouch for; audit again"
            )
    if stored != _text(listed).encode():  # the hashes hold; the list itself must be as written, to the byte
        raise error(f"{path}: changed since the audit wrote it: audit again")
