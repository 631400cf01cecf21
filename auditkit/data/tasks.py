"""Tasks drawn from a labelled image set: two classes (one output) or C classes (C outputs), split into
members, a test set and the non-member pool, deterministically by seed. Inputs are pixels in [0, 1] minus
the per-pixel training mean, as in the paper; the mean is kept so reconstructions can be shown as images
and the attack knows the valid input range."""

from __future__ import annotations

import numpy as np

from auditkit.data.audit_data import AuditData
from auditkit.errors import DataError

PARITY = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))


def binary_task(images: np.ndarray, classes: np.ndarray, negative, positive, *draw, **named) -> AuditData:
    """Two classes (labels -1, +1), each a group of source classes, for a one-output victim.

    Args:
        images: flat pixel rows in [0, 1], one per image.
        classes: each image's source class.
        negative: the source classes labelled -1.
        positive: the source classes labelled +1.
        *draw: n_per_class, test_per_class, seed, image_shape, name, as :func:`class_task` takes them.
        **named: the same, by name.

    Returns:
        The task's AuditData (members, test set, non-member pool).
    """
    return class_task(images, classes, [tuple(negative), tuple(positive)], (-1.0, 1.0), *draw, **named)


def multiclass_task(images: np.ndarray, classes: np.ndarray, chosen: tuple[int, ...], *draw, **named) -> AuditData:
    """C classes (labels 0..C-1, in the order of ``chosen``) for a C-output victim.

    Args:
        images: flat pixel rows in [0, 1], one per image.
        classes: each image's source class.
        chosen: the source classes, one label each.
        *draw: as :func:`binary_task` takes it.
        **named: the same, by name.

    Returns:
        The task's AuditData.
    """
    labels = tuple(float(k) for k in range(len(chosen)))
    return class_task(images, classes, [(c,) for c in chosen], labels, *draw, **named)


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
