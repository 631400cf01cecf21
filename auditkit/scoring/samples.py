"""The per-sample frame: each training sample's label, margins, the attack's own columns, its best-matching
candidate and how close that match is (SSIM for images, cosine for embeddings)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditkit.scoring.metrics import match, minmax, same_class_ssim, ssim

REBUILT_ERROR = 0.05  # a candidate within this of every pixel of its sample rebuilds it almost exactly
REBUILT_SSIM = 0.9  # or one at least this similar by SSIM
REBUILT_COSINE = 0.99  # an embedding's candidate at least this similar by cosine rebuilds it almost exactly
COSINE_THRESHOLD = 0.9  # embeddings: a candidate this similar counts as a reconstruction (SSIM's threshold's role)


def per_sample_frame(
    data, samples: np.ndarray, candidates: np.ndarray, pool: np.ndarray, output, margins, ssim_threshold: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per training sample, and each one's nearest non-member (-1 when none) for the look-alike view.

    Args:
        data: the audit's :class:`auditkit.data.audit_data.AuditData` (labels, mean image, how to compare).
        samples, candidates, pool: members, the attack's candidates and the non-members, in pixel space
            (or as embeddings, for feature data).
        output: the attack's :class:`auditkit.attacks.base.AttackOutput` (its columns, each candidate's
            multiplier, label and restart).
        margins: each member's margin under the model.
        ssim_threshold: the paper's reconstruction threshold (images).

    Returns:
        The frame and, per member, the index of the non-member nearest its matched candidate.
    """
    n, similarity = len(samples), data.similarity
    baseline = np.full(n, np.nan)
    if not data.features:
        baseline = ssim(np.repeat(minmax(data.mean.reshape(1, *data.image_shape)), n, 0), samples)
    frame = pd.DataFrame(
        {
            "sample": np.arange(n),
            "source_index": data.train_index,
            "label": data.train_y.astype(int),
            "margin": margins,
            "normalized_margin": normalized_margins(margins),
            **output.per_sample,
            "baseline_ssim": baseline,
        }
    )
    frame["ssim"] = np.nan
    frame[similarity.name] = np.nan  # the score's column says how samples are compared, candidates or none
    if len(candidates) == 0:
        frame["identified"] = False
        frame["reconstructed"] = False
        frame["rebuilt"] = False
        return frame, np.full(n, -1)
    scores = match(samples, candidates, pool, similarity)
    frame[similarity.name] = scores[similarity.name]
    frame["identified"] = scores["identified"]
    frame["candidate"] = scores["candidate"]
    frame["candidate_lambda"] = output.lambdas[scores["candidate"]]
    frame["candidate_restart"] = output.restart[scores["candidate"]]
    frame[similarity.distance_name] = scores[similarity.distance_name]
    matched = candidates[scores["candidate"]].reshape(n, -1)
    frame["max_abs_error"] = np.abs(matched - samples.reshape(n, -1)).max(1)
    frame[f"control_{similarity.name}"] = scores[f"control_{similarity.name}"]
    if data.features:
        frame["reconstructed"] = frame["cosine"] > COSINE_THRESHOLD
        close = frame["cosine"] >= REBUILT_COSINE
    else:
        frame["dssim"] = (1 - scores["ssim"]) / 2
        frame["reconstructed"] = scores["ssim"] > ssim_threshold
        labels = frame["label"].to_numpy()
        frame["ssim_same_class"] = same_class_ssim(samples, labels, candidates, output.labels)
        close = (frame["max_abs_error"] <= REBUILT_ERROR) | (frame["ssim"] >= REBUILT_SSIM)
    frame["rebuilt"] = frame["identified"] & close
    return frame, scores["nearest_nonmember"]


def normalized_margins(margins: np.ndarray) -> np.ndarray:
    """``margins`` divided by the smallest positive one (the nearest correctly classified sample reads 1): the
    scale the papers compare samples on. All NaN when no sample is classified correctly."""
    positive = margins[margins > 0]
    return margins / (positive.min() if len(positive) else np.nan)
