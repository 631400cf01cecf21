"""CIFAR-10 from the official binary distribution (fixed-size records, never the pickled Python version)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditkit.errors import DataError

CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-bin"  # the archive's folder
CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 red, 1024 green, 1024 blue pixels (row-major)
CIFAR_FILE_BYTES = 10_000 * CIFAR_RECORD  # each official file holds 10,000 records
VEHICLES, ANIMALS = (0, 1, 8, 9), (2, 3, 4, 5, 6, 7)  # airplane, automobile, ship, truck; the rest


def load_cifar10_images(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the official *binary* distribution, as (N, 3072) floats in [0, 1] (channel-major:
    the (3, 32, 32) image flattened) and class labels 0-9, training batches first, then the test batch.

    path (else ``$AUDITKIT_DATA``): ``cifar-10-binary.tar.gz``, or a folder holding it, its extracted
    ``cifar-10-batches-bin/`` or the ``data_batch_*.bin`` files themselves. Fixed-size records, no
    pickle: the Python distribution of CIFAR-10 is pickled and is never loaded.
    """
    import os

    where = path if path is not None else os.environ.get("AUDITKIT_DATA")
    help_text = (
        f"put the official CIFAR-10 binary version ({CIFAR_ARCHIVE}, from the CIFAR-10 site; not the "
        "pickled Python version) or its extracted data_batch_*.bin files in a folder, and give it as "
        "data.path or $AUDITKIT_DATA"
    )
    if where is None:
        raise DataError(f"CIFAR-10: no data.path and no $AUDITKIT_DATA: {help_text}")
    chunks = [_cifar_records(raw, name) for name, raw in _cifar_files(Path(where), help_text)]
    records = np.concatenate(chunks)
    return records[:, 1:] / 255.0, records[:, 0].astype(np.int64)


def _cifar_files(where: Path, help_text: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every CIFAR-10 binary file found at ``where`` (data_batch_1.bin is required)."""
    archive = where if where.is_file() else where / CIFAR_ARCHIVE
    if archive.is_file():
        return _cifar_archive(archive)
    folder = where / CIFAR_FOLDER if (where / CIFAR_FOLDER).is_dir() else where
    found = [folder / name for name in CIFAR_FILES if (folder / name).is_file()]
    if not found or found[0].name != CIFAR_FILES[0]:
        pickled = " (found the pickled Python version, which is refused)" if (folder / "data_batch_1").exists() else ""
        raise DataError(f"missing CIFAR-10 file {folder / CIFAR_FILES[0]}{pickled}: {help_text}")
    for file in found:
        if file.stat().st_size > CIFAR_FILE_BYTES:
            raise DataError(f"{file}: {file.stat().st_size} bytes, more than a CIFAR-10 batch's {CIFAR_FILE_BYTES}")
    return [(str(file), file.read_bytes()) for file in found]


def _cifar_archive(archive: Path) -> list[tuple[str, bytes]]:
    """The binary batch files read straight out of the official archive (nothing is extracted)."""
    import tarfile

    files = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in CIFAR_FILES:
                try:
                    member = tar.getmember(f"{CIFAR_FOLDER}/{name}")
                except KeyError:
                    continue
                if not member.isfile() or member.size > CIFAR_FILE_BYTES:
                    raise DataError(f"{archive}: member {member.name} is not a CIFAR-10 batch file")
                files.append((f"{archive}:{member.name}", tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{archive}: not a readable .tar.gz ({error})") from None
    if not files or not files[0][0].endswith(CIFAR_FILES[0]):
        raise DataError(f"{archive}: no {CIFAR_FOLDER}/{CIFAR_FILES[0]} inside; is it the binary version?")
    return files


def _cifar_records(raw: bytes, name: str) -> np.ndarray:
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        raise DataError(f"{name}: {len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    if records[:, 0].max() > 9:
        raise DataError(f"{name}: a label byte is {int(records[:, 0].max())}; CIFAR-10 labels are 0-9")
    return records
