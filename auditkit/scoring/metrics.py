"""Matching reconstructions to training samples and scoring them: SSIM for images, cosine for embeddings.

SSIM follows the paper's protocol: the candidate is moved to pixel space (mean added back), min-max
scaled to [0, 1], and compared with a 3x3 Gaussian window (sigma 1.5), zero padding, averaged over the
image. Because SSIM > 0.4 is passed even by the mean image, the headline criterion is *identified*:
the matched candidate's nearest sample among members and non-members (NCC for images, cosine for
embeddings) is the member itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 3  # the Gaussian window's side, in pixels

C1, C2 = 0.01**2, 0.03**2


def identification_bytes(candidates: int, members: int, nonmembers: int, features: int) -> int:
    """What matching ``candidates`` to ``members`` and ``nonmembers`` allocates at most (float64): the
    standardised copies, the candidate-by-image distances and their clipped copies, the members-by-non-members
    look-alike distances."""
    pairs = 2 * candidates * members + 2 * candidates * nonmembers + members * nonmembers
    return 8 * (pairs + 2 * (candidates + members + nonmembers) * features)


def standardize(rows: torch.Tensor) -> torch.Tensor:
    """Each row (last dimension) to zero mean and unit norm: squared L2 between rows is 2 (1 - correlation)."""
    centred = rows - rows.mean(-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)


def ncc_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise NCC distance (squared L2 of standardised images, in [0, 4]), shape (len(a), len(b))."""
    sa, sb = (standardize(torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1))) for x in (a, b))
    return np.clip(2.0 - 2.0 * (sa @ sb.T).numpy(), 0.0, None)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine distance 2 (1 - cosine) of rows as given (not centred), in [0, 4], shape (len(a), len(b))."""
    unit = [torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1)) for x in (a, b)]
    sa, sb = (u / u.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny) for u in unit)
    return np.clip(2.0 - 2.0 * (sa @ sb.T).numpy(), 0.0, None)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine similarity of each row of ``a`` with the same row of ``b``, shape (k,)."""
    a, b = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) for x in (a, b))
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), np.finfo(float).tiny)
    return (a * b).sum(1) / norms


@dataclass(frozen=True)
class Similarity:
    """How samples are compared: ``distance`` finds each one's nearest (pairwise, smaller is closer) and
    ``score`` rates a matched pair (higher is closer); ``name`` and ``distance_name`` name their columns."""

    name: str
    distance_name: str
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]
    score: Callable[[np.ndarray, np.ndarray], np.ndarray]
    description: str


def _ssim_of_candidates(matched: np.ndarray, images: np.ndarray) -> np.ndarray:
    return ssim(minmax(matched), images)


def minmax(images: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] (a constant image maps to 0)."""
    flat = images.reshape(len(images), -1)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return ((flat - low) / span).reshape(images.shape)


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """A normalised ``size`` x ``size`` Gaussian window of width ``sigma``."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def ssim(
    a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW, sigma: float = 1.5, padding: str = "same"
) -> np.ndarray:
    """Mean SSIM of image pairs (data range 1), shape (k,).

    a, b: (k, H, W) or (k, C, H, W), values in [0, 1]. padding "same": zero padding and the mean over
    the whole image (the paper's protocol); "valid": only windows inside the image (scikit-image's crop).
    Channels are scored separately and averaged.
    """
    ta = torch.as_tensor(np.asarray(a, dtype=np.float64))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64))
    if ta.ndim == 3:
        ta, tb = ta[:, None], tb[:, None]
    k, channels = ta.shape[:2]
    ta = ta.reshape(k * channels, 1, *ta.shape[2:])
    tb = tb.reshape(k * channels, 1, *tb.shape[2:])
    kernel = torch.as_tensor(gaussian_window(window, sigma))[None, None]
    pad = window // 2 if padding == "same" else 0

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=pad)

    mu_a, mu_b = blur(ta), blur(tb)
    var_a = blur(ta * ta) - mu_a**2
    var_b = blur(tb * tb) - mu_b**2
    cov = blur(ta * tb) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return score.mean((1, 2, 3)).reshape(k, channels).mean(1).numpy()


IMAGES = Similarity("ssim", "ncc_distance", ncc_distance, _ssim_of_candidates, "SSIM in pixel space (matched by NCC)")
EMBEDDINGS = Similarity(
    "cosine", "cosine_distance", cosine_distance, paired_cosine, "cosine similarity in the embedding space"
)


def match(
    train_images: np.ndarray,
    candidate_images: np.ndarray,
    pool_images: np.ndarray,
    similarity: Similarity = IMAGES,
) -> dict[str, np.ndarray]:
    """Score every training sample against its nearest candidate (images in pixel space, or embeddings).

    Returns per-training-sample arrays: ``candidate`` (index), the distance (``ncc_distance`` or
    ``cosine_distance``), the score (``ssim``, paper protocol, or ``cosine``), ``identified`` (the candidate's
    nearest sample among train + pool is this training sample), ``control_ssim`` or ``control_cosine`` (the
    candidate against its nearest non-member: a look-alike check) and ``nearest_nonmember`` (its index, -1
    without any).
    """
    n = len(train_images)
    to_train = similarity.distance(candidate_images, train_images)  # (K, n)
    nearest = to_train.argmin(0)
    matched = candidate_images[nearest]
    result = {
        "candidate": nearest,
        similarity.distance_name: to_train[nearest, np.arange(n)],
        similarity.name: similarity.score(matched, train_images),
    }
    if len(pool_images):
        to_pool = similarity.distance(matched, pool_images)  # (n, P)
        nearest_pool = to_pool.argmin(1)
        closest_member = to_train[nearest].argmin(1)
        result["identified"] = (closest_member == np.arange(n)) & (
            to_train[nearest, np.arange(n)] < to_pool[np.arange(n), nearest_pool]
        )
        result[f"control_{similarity.name}"] = similarity.score(matched, pool_images[nearest_pool])
        result["nearest_nonmember"] = nearest_pool
    else:
        result["identified"] = to_train[nearest].argmin(1) == np.arange(n)
        result[f"control_{similarity.name}"] = np.full(n, np.nan)
        result["nearest_nonmember"] = np.full(n, -1)
    return result


def identified_nonmembers(
    train_images: np.ndarray, candidate_images: np.ndarray, pool_images: np.ndarray, similarity: Similarity = IMAGES
) -> np.ndarray:
    """The members' criterion applied to every non-member, shape (P,): non-member j counts as
    identified when its nearest candidate is closer to j than to any other sample of train + pool.
    A candidate that 'identifies' a non-member is a false positive of the attack."""
    if len(pool_images) == 0 or len(candidate_images) == 0:
        return np.zeros(len(pool_images), dtype=bool)
    to_pool = similarity.distance(candidate_images, pool_images)  # (K, P)
    to_train = similarity.distance(candidate_images, train_images)  # (K, n)
    nearest = to_pool.argmin(0)  # each non-member's nearest candidate
    closest_pool, closest_distance = to_pool.argmin(1), to_pool.min(1)  # each candidate's nearest non-member
    own = closest_pool[nearest] == np.arange(len(pool_images))
    return own & (closest_distance[nearest] < to_train.min(1)[nearest])


def same_class_ssim(
    train_images: np.ndarray, train_labels: np.ndarray, candidate_images: np.ndarray, candidate_labels: np.ndarray
) -> np.ndarray:
    """Per training image, the SSIM of its NCC-nearest candidate among those carrying its own label (NaN
    when no candidate has it): the within-class match, beside ``match``'s match over all classes."""
    scores = np.full(len(train_images), np.nan)
    for label in np.unique(train_labels):
        members, own = train_labels == label, candidate_labels == label
        if own.any():
            scores[members] = match(train_images[members], candidate_images[own], train_images[:0])["ssim"]
    return scores
