"""The audit's data contract: training members, held-out test set and non-member pool as flat arrays (images,
or embeddings with the images behind them for display)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditkit.scoring.metrics import EMBEDDINGS, IMAGES, Similarity


@dataclass
class AuditData:
    """Training members, held-out test set and the non-member pool, all as flat float64 arrays.

    ``train_x`` etc. are in the victim's input space (``(pixels - mean) / std``, ``std`` 1 unless the user's
    inputs were scaled too, as with torchvision's ``Normalize``); labels are in {-1, +1}
    (binary task, one-output victim) or 0..C-1 (C classes, C-output victim).
    ``pool_x`` holds every image of the task's classes not used for training (test set included): the
    non-members that identification and look-alike controls compare against.

    Feature data (embeddings of a frozen backbone, for a head trained on them) has ``image_shape`` ``(d,)``:
    samples are compared by cosine, the valid range is ``bounds`` (a box fitted on the non-members), and
    ``train_display`` / ``pool_display`` hold the images behind the embeddings when known (pixels in [0, 1]).
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
    std: np.ndarray | None = None  # per feature; None: the inputs were not scaled (all ones)
    bounds: tuple[np.ndarray, np.ndarray] | None = None  # (lower, upper) per feature; None: the pixel range
    train_display: np.ndarray | None = None  # feature data: the members' images, (n, H, W) or (n, C, H, W)
    pool_display: np.ndarray | None = None  # feature data: the non-members' images

    def __post_init__(self) -> None:
        if self.std is None:
            self.std = np.ones_like(self.mean)

    @property
    def outputs(self) -> int:
        """The victim's output count this task needs: 1 (labels -1/+1) or C (labels 0..C-1)."""
        return 1 if set(np.unique(self.train_y)) <= {-1.0, 1.0} else int(self.train_y.max()) + 1

    @property
    def features(self) -> bool:
        """Whether the samples are embeddings (flat vectors compared by cosine), not images."""
        return len(self.image_shape) == 1

    @property
    def similarity(self) -> Similarity:
        """How a reconstruction is matched and scored: SSIM for images, cosine for embeddings."""
        return EMBEDDINGS if self.features else IMAGES

    @property
    def lower(self) -> np.ndarray:
        """Smallest valid input per dimension (pixel 0, normalised; feature data: its box)."""
        return self.bounds[0] if self.bounds is not None else -self.mean / self.std

    @property
    def upper(self) -> np.ndarray:
        """Largest valid input per dimension (pixel 1, normalised; feature data: its box)."""
        return self.bounds[1] if self.bounds is not None else (1.0 - self.mean) / self.std

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """Input-space rows back to images in pixel space (feature data: embeddings as given), shape
        (k, *image_shape)."""
        return (np.asarray(x) * self.std + self.mean).reshape(-1, *self.image_shape)
