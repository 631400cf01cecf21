"""Feature data: embeddings of a frozen backbone as the audit's samples (for a head trained on them), from an
image task through a backbone, or from a user's arrays, with the images behind them kept for display."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from auditkit.data.audit_data import AuditData
from auditkit.data.user_data import SampleWords, as_numpy, labelled_samples, rows, without_members
from auditkit.errors import DataError

BOX_WIDENING = 0.1  # the prior's box: the non-members' range per feature, widened by this share of it each side


def feature_box(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prior's box for embeddings: per feature, the range the non-members span (public data, as the attack's
    reference inputs are), widened by ``BOX_WIDENING`` of it on each side."""
    if not len(pool):
        raise DataError(
            "nonmember_x: feature data needs non-member embeddings (the prior's box is fitted on them, and the "
            "members-vs-non-members test reads them)"
        )
    low, high = pool.min(0), pool.max(0)
    slack = BOX_WIDENING * np.maximum(high - low, np.finfo(float).eps)
    return low - slack, high + slack


def as_features(data: AuditData, embedding: Callable[[np.ndarray], np.ndarray]) -> AuditData:
    """An image task's data as the embeddings ``embedding`` gives its images (flat pixel rows in, (N, d) out),
    centred on the members' mean embedding as the images were on their mean, the images kept for display."""
    pixels = [data.to_pixels(x).reshape(len(x), -1) for x in (data.train_x, data.test_x, data.pool_x)]
    train, test, pool = (embedding(rows_) for rows_ in pixels)
    mean = train.mean(0)
    lower, upper = feature_box(pool)
    return dataclasses.replace(
        data,
        train_x=train - mean,
        test_x=test - mean,
        pool_x=pool - mean,
        mean=mean,
        std=np.ones_like(mean),
        image_shape=(train.shape[1],),
        bounds=(lower - mean, upper - mean),
        train_display=data.to_pixels(data.train_x),
        pool_display=data.to_pixels(data.pool_x),
        notes=(*data.notes, f"samples are {train.shape[1]}-dimensional embeddings of the images (cosine similarity)"),
    )


def feature_data(
    train_x,
    train_y,
    *,
    nonmembers,
    test: tuple | None = None,
    train_images=None,
    nonmember_images=None,
    name: str = "data",
    outputs: int = 1,
    inputs: int | None = None,
) -> AuditData:
    """AuditData from a user's embeddings (the head's inputs as it was trained on them), the prior a box fitted on
    the non-members.

    Args:
        train_x: the members' embeddings, (n, d).
        train_y: their labels, as :func:`auditkit.data.user_data.class_labels` maps them.
        nonmembers: embeddings of the same backbone not trained on (required: the box and the membership test).
        test: held-out (embeddings, labels), for the test accuracy.
        train_images: the image behind each member's embedding, (n, H, W) or (n, C, H, W), for the report.
        nonmember_images: the image behind each non-member's embedding.
        name: the data's name.
        outputs: the head's outputs (1: labels -1/+1; C: labels 0..C-1).
        inputs: the head's input width, checked against the embeddings'.

    Returns:
        Feature data (``image_shape`` ``(d,)``): compared by cosine, the images kept for display.

    Raises:
        DataError: naming the key (``train_x``, ``nonmember_x``, ``train_images``, ...) of any input that does
        not fit: images where embeddings belong, another width than the head's, NaN, counts that disagree.
    """
    words = SampleWords("train_x", "train_x", "nonmember_x", "embedding", _embeddings)
    x, y, labels_note, pool, test_x, test_y = labelled_samples(
        train_x, train_y, nonmembers, test, outputs, inputs, words
    )
    train_display = _images(train_images, "train_images", len(x), "train_x")
    pool_display = _images(nonmember_images, "nonmember_images", len(pool), "nonmember_x")
    kept, note = without_members(pool, x)
    lower, upper = feature_box(pool[kept])
    return AuditData(
        name=name,
        train_x=x,
        train_y=y,
        test_x=test_x,
        test_y=test_y,
        pool_x=pool[kept],
        pool_y=np.full(int(kept.sum()), np.nan),
        mean=np.zeros(x.shape[1]),
        image_shape=(x.shape[1],),
        train_index=np.arange(len(x)),
        notes=(labels_note, f"samples are {x.shape[1]}-dimensional embeddings as given (cosine similarity)", *note)
        + _sphere_note(x, pool),
        bounds=(lower, upper),
        train_display=train_display,
        pool_display=pool_display[kept] if pool_display is not None else None,
    )


UNIT_NORM_TOLERANCE = 1e-3


def _sphere_note(train: np.ndarray, pool: np.ndarray) -> tuple[str, ...]:
    """A note for L2-normalised embeddings (every row of unit norm): the prior used is still the box."""
    norms = np.linalg.norm(np.vstack([train, pool]), axis=1)
    if not np.allclose(norms, 1.0, atol=UNIT_NORM_TOLERANCE):
        return ()
    return ("embeddings are L2-normalised; the search is held to the non-members' box, not projected onto the sphere",)


def _embeddings(values, key: str) -> np.ndarray:
    """Rows of numbers, one embedding each; an image array (more than two dimensions) is refused by name."""
    array = as_numpy(values, key)
    if array.ndim > 2:
        raise DataError(
            f"{key}: shape {array.shape} is an array of images; embeddings are rows (n, d) (the images behind them "
            "go under train_images / nonmember_images, for display)"
        )
    return rows(array, key)


def _images(values, key: str, count: int, beside: str) -> np.ndarray | None:
    """The images behind ``count`` embeddings, each (H, W) or (C, H, W) with 1 or 3 channels, min-max scaled
    to [0, 1] per image for display; None when not given."""
    if values is None:
        return None
    array = as_numpy(values, key)
    if array.dtype.kind not in "iuf" or array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[1] not in (1, 3)):
        raise DataError(f"{key}: expected images (n, H, W) or (n, C, H, W) with 1 or 3 channels, got {array.shape}")
    if len(array) != count:
        raise DataError(f"{key}: {len(array)} images for {count} embeddings in {beside}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"{key}: NaN or infinite values")
    flat = array.reshape(len(array), -1)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - low) / np.where(high > low, high - low, 1.0)).reshape(array.shape)
