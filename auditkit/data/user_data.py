"""A user's own arrays or tensors become AuditData, and every assumption made on the way (label encoding,
input preparation) is stated in its notes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from auditkit.data.audit_data import AuditData
from auditkit.errors import DataError
from auditkit.scoring.metrics import SSIM_WINDOW


def class_labels(labels: Iterable, outputs: int = 1) -> tuple[np.ndarray, str]:
    """The labels as the attack reads them, and how they were mapped.

    One output (binary): any two-class encoding ({0, 1}, {-1, +1}, booleans, two strings) as {-1, +1}.
    C outputs: integer labels in 0..C-1 as they are (the model's output order); any other C or fewer
    distinct labels as 0..k-1 in sorted order, which the note states (check it matches the output order).
    """
    arrays = isinstance(labels, torch.Tensor | np.ndarray)
    values = as_numpy(labels, "labels") if arrays else np.asarray(list(labels))
    if values.ndim == 0:
        raise DataError("labels: expected one label per sample, got a single value (an array of shape ())")
    values = values.reshape(-1)
    if values.dtype.kind not in "biuUS" and not (values.dtype.kind == "f" and (values == np.round(values)).all()):
        raise DataError(f"labels: expected classes (integers, booleans or strings), got {values.dtype} values")
    if values.dtype.kind == "f":
        values = values.astype(np.int64)  # 0.0 and 0 are one class, named alike in train and test notes
    classes = sorted(set(values.tolist()))
    if outputs == 1:
        if len(classes) != 2:
            raise DataError(
                f"labels: {len(classes)} classes found ({classes[:5]}) but the model has one output (binary: two "
                "classes); a C-class model has C outputs"
            )
        negative, positive = (-1, 1) if classes == [-1, 1] else classes
        return np.where(values == positive, 1.0, -1.0), f"labels {negative!r} -> -1, {positive!r} -> +1"
    if len(classes) > outputs or len(classes) < 2:
        raise DataError(f"labels: {len(classes)} classes found but the model has {outputs} outputs")
    if values.dtype.kind in "iuf" and set(classes) <= set(range(outputs)):
        return values.astype(np.float64), f"labels are class indices 0..{outputs - 1} (the model's outputs)"
    index = {label: position for position, label in enumerate(classes)}
    mapped = np.array([index[v] for v in values.tolist()], dtype=np.float64)
    return mapped, "labels in sorted order -> outputs: " + ", ".join(f"{c!r} -> {i}" for c, i in index.items())


def audit_data(
    train_x,
    train_y,
    *,
    nonmembers=None,
    test: tuple | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    image_shape: tuple[int, ...] | None = None,
    name: str = "data",
    outputs: int = 1,
    inputs: int | None = None,
) -> AuditData:
    """AuditData from arrays or tensors, for a model with ``outputs`` outputs (labels: :func:`class_labels`);
    ``test``: held-out (inputs, labels), prepared like the training inputs, for the test accuracy.
    ``mean`` and ``std``: the normalisation of [0, 1] pixels before training, inputs ``(pixels - mean) / std``
    (each a number, one per channel of (C, H, W) images, or one per feature; ``std`` 1 when not given, ``mean``
    0); without either the inputs must be pixels in [0, 1]. Which one applies is checked and stated."""
    x, y, labels_note, pool, test_x, test_y = labelled_samples(train_x, train_y, nonmembers, test, outputs, inputs)
    shape = _checked_shape(image_shape, x.shape[1])
    if mean is None and std is None:
        if x.min() < 0 or x.max() > 1:
            raise DataError(
                f"train inputs: values in [{_shown(x.min())}, {_shown(x.max())}], not pixels in [0, 1]: give the "
                "mean that was subtracted (key 'mean'), and the std they were divided by (key 'std'); embeddings are "
                "read as feature data (--features)"
            )
        mean, input_note = np.zeros(x.shape[1]), "inputs are pixels in [0, 1] (checked), not centred"
    else:
        mean = _per_feature(mean, "mean", shape) if mean is not None else np.zeros(x.shape[1])
        if std is not None:
            std = _per_feature(std, "std", shape)
            if (std <= 0).any():
                raise DataError("std: holds values <= 0; it is what the inputs were divided by")
        for given, what in ((x, "train inputs (train_x)"), (pool, "non-members (nonmember_x)"), (test_x, "test_x")):
            _check_centred(given, mean, std, what)
        input_note = (
            "inputs are pixels in [0, 1] minus the given mean (checked: inputs + mean lie in [0, 1])"
            if std is None
            else "inputs are (pixels in [0, 1] - mean) / std, as given (checked: inputs * std + mean lie in [0, 1])"
        )
    kept, pool_note = without_members(pool, x)
    pool = pool[kept]
    repeated = len(x) - len(np.unique(x, axis=0))
    if repeated:
        pool_note += (
            f"{repeated} training rows repeat another training row: each copy is scored as a sample of its own",
        )
    return AuditData(
        name=name,
        train_x=x,
        train_y=y,
        test_x=test_x,
        test_y=test_y,
        pool_x=pool,
        pool_y=np.full(len(pool), np.nan),  # unknown: the one-run test pairs no member with them
        mean=mean,
        image_shape=shape,
        train_index=np.arange(len(x)),
        notes=(labels_note, input_note, *pool_note),
        std=std,
    )


@dataclass(frozen=True)
class SampleWords:
    """How messages name the samples of one kind of data, and how its rows are read."""

    train: str  # the members' inputs
    train_key: str  # the same where the model's width is compared
    pool: str  # the non-members'
    unit: str  # one sample
    read: Callable[[object, str], np.ndarray]


IMAGE_WORDS = SampleWords("train inputs", "train inputs (train_x)", "non-members", "sample", lambda v, w: rows(v, w))


def labelled_samples(train_x, train_y, nonmembers, test, outputs: int, inputs: int | None, words=IMAGE_WORDS):
    """The members' rows and labels, the non-members' rows and the held-out pairs, read and checked to agree.

    Args:
        train_x: the members' inputs.
        train_y: their labels (:func:`class_labels`).
        nonmembers: the non-members' inputs, or None.
        test: held-out (inputs, labels), or None.
        outputs: the model's outputs.
        inputs: the model's input width, when known.
        words: how messages name the samples, and how rows are read.

    Returns:
        ``(x, y, labels_note, pool, test_x, test_y)``.
    """
    x = words.read(train_x, words.train)
    if inputs is not None and x.shape[1] != inputs:
        raise DataError(
            f"{words.train_key}: {x.shape[1]} features per {words.unit} but the model takes {inputs} inputs"
        )
    y, labels_note = class_labels(train_y, outputs)
    if len(y) != len(x):
        raise DataError(f"{words.train}: {len(x)} rows but {len(y)} labels")
    pool = words.read(nonmembers, words.pool) if nonmembers is not None else np.zeros((0, x.shape[1]))
    if pool.shape[1] != x.shape[1]:
        raise DataError(f"{words.pool}: {pool.shape[1]} features, the training inputs have {x.shape[1]}")
    return (x, y, labels_note, pool, *held_out(test, x.shape[1], labels_note, outputs))


def held_out(test: tuple | None, features: int, labels_note: str, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out (inputs, labels) as arrays, labels mapped as the training labels were (checked to agree)."""
    if test is None:
        return np.zeros((0, features)), np.zeros(0)
    test_x = rows(test[0], "test inputs (test_x)")
    test_y, note = class_labels(test[1], outputs)
    if test_x.shape[1] != features or len(test_y) != len(test_x):
        raise DataError(
            f"test_x: {test_x.shape} with {len(test_y)} labels; the training inputs have {features} features"
        )
    if note != labels_note:
        raise DataError(f"test_y: its labels map as '{note}', the training labels as '{labels_note}'")
    return test_x, test_y


def without_members(pool: np.ndarray, train_x: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Which non-members to keep: those that equal no training input (a copy of a member would be counted as a
    non-member the attack identifies, and a pool of the members themselves would force the test to find
    nothing), with a note saying how many were removed."""
    members = {row.tobytes() for row in train_x}
    copies = np.array([row.tobytes() in members for row in pool], dtype=bool).reshape(len(pool))
    if not copies.any():
        return ~copies, ()
    note = f"{int(copies.sum())} of {len(pool)} non-members equal a training input and were removed from them"
    return ~copies, (note,)


PIXEL_TOLERANCE = 1e-4  # float32 inputs round-tripped through a subtraction


def _check_centred(rows: np.ndarray, mean: np.ndarray, std: np.ndarray | None, what: str) -> None:
    """Inputs given with a mean (and std) are the model's inputs, normalised pixels: inputs * std + mean must be
    pixels in [0, 1]. Raw pixels sent beside the mean (or a mean that does not belong to them) fail here."""
    if not len(rows):
        return
    pixels = rows * (1.0 if std is None else std) + mean
    low, high = float(pixels.min()), float(pixels.max())
    if low >= -PIXEL_TOLERANCE and high <= 1 + PIXEL_TOLERANCE:
        return
    given = "mean" if std is None else "mean and std"
    raw = rows.min() >= 0 and rows.max() <= 1
    hint = (
        f"they look like raw [0, 1] pixels: send the model's inputs (the normalised pixels) with the {given}, or "
        f"raw pixels without a {given}"
        if raw
        else f"the {given} {'does' if std is None else 'do'} not belong to these inputs (the normalisation applied "
        "to [0, 1] pixels is needed)"
    )
    formula = "+ mean" if std is None else "* std + mean"
    raise DataError(f"{what} {formula} lie in [{low:.3g}, {high:.3g}], not [0, 1]: {hint}")


def _per_feature(values, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``mean`` or ``std`` as one value per feature, from a number, one per channel of (C, H, W) images, or one
    per feature (the torchvision convention is per channel)."""
    array = as_numpy(values, key)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{key}: {array.dtype} values; expected numbers (one, one per channel or one per feature)")
    array = array.astype(np.float64).reshape(-1)
    features = int(np.prod(shape))
    channels = shape[0] if len(shape) == 3 else 1
    if array.size in (1, channels):
        array = np.repeat(array, features // array.size)
    if array.size != features:
        raise DataError(
            f"{key}: {array.size} values, but the inputs have {features} features (give one number, one per "
            f"channel ({channels}) or one per feature)"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{key}: holds NaN or infinite values")
    return array


def _checked_shape(image_shape, features: int) -> tuple[int, ...]:
    """The images' shape: ``image_shape`` when given, else a square if the feature count makes one; checked to
    hold the features, have 1 or 3 channels and sides no smaller than the SSIM window."""
    shape = _image_shape(image_shape) if image_shape is not None else _square(features)
    if int(np.prod(shape)) != features or len(shape) not in (2, 3):
        raise DataError(
            f"image_shape: {shape} is not (H, W) or (C, H, W) for {features} features; give it (or, for embeddings, "
            "read them as feature data: --features, or auditkit.data.features.feature_data)"
        )
    if len(shape) == 3 and shape[0] not in (1, 3):
        raise DataError(f"image_shape: {shape} has {shape[0]} channels; (C, H, W) images are grayscale (1) or RGB (3)")
    if min(shape[-2:]) < SSIM_WINDOW:
        raise DataError(
            f"image_shape: {shape} has a side under {SSIM_WINDOW} pixels, the SSIM window: the inputs must be images "
            "of the shape they were taken as"
        )
    return shape


def as_numpy(values, what: str) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array; meta (no values) and sparse tensors are refused."""
    if isinstance(values, torch.Tensor):
        if values.is_meta:
            raise DataError(f"{what}: a tensor on the meta device (a shape without values)")
        if values.layout != torch.strided:
            raise DataError(f"{what}: a {values.layout} tensor; give a dense one (.to_dense())")
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _shown(value: float) -> str:
    """A value short enough to read, yet never rounded onto the other side of 0 or 1."""
    text = f"{value:.8g}"
    return text if (0 <= float(text) <= 1) == (0 <= value <= 1) else repr(float(value))


def rows(values, what: str) -> np.ndarray:
    """``values`` as float64 rows, one per sample (trailing dimensions flattened); empty, non-numeric, NaN or
    infinite values are refused naming ``what``."""
    array = as_numpy(values, what)
    if array.dtype.kind not in "iuf" or array.ndim < 2 or len(array) == 0:
        raise DataError(
            f"{what}: expected a non-empty numeric array of shape (N, ...), got {array.dtype} {array.shape}"
        )
    array = array.reshape(len(array), -1).astype(np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"{what}: NaN or infinite values")
    return array


def _image_shape(values) -> tuple[int, ...]:
    """``image_shape`` as integers; fractions, booleans and non-positive sizes are refused, never rounded."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if isinstance(values, tuple | list) and any(isinstance(v, bool) for v in values):
        array = np.zeros(0)  # True is not a size
    if array.dtype.kind not in "iu" or array.ndim != 1 or not len(array) or (array <= 0).any():
        shown = " ".join(repr(values.tolist() if isinstance(values, np.ndarray) else values).split())
        raise DataError(
            f"image_shape: expected positive integers, e.g. (28, 28) or (3, 32, 32), got {shown[:80]}"
            + ("..." if len(shown) > 80 else "")
        )
    return tuple(int(v) for v in array)


def _square(features: int) -> tuple[int, ...]:
    """A square grayscale image when the feature count allows one (the SSIM needs an image shape)."""
    side = int(round(features**0.5))
    return (side, side) if side * side == features else (features,)
