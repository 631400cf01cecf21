"""Membership by a distance: ROC AUC and the true-positive rate at a low false-positive rate, thresholds taken
from the non-members alone.

An attack that scores any input with a membership distance (lower: more likely a member; the span attack's
residual) is read as LiRA and TF Privacy read theirs: the area under the ROC curve, and the fraction of
members below the threshold that at most the given fraction of non-members fall below.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

LOW_FPRS = (0.001, 0.01)


@dataclass(frozen=True)
class DistanceROC:
    """How well a membership distance separates members from non-members."""

    auc: float  # P(a non-member's distance > a member's), ties counted half; NaN without both groups
    tpr_at_0_1pct_fpr: float
    tpr_at_1pct_fpr: float

    @classmethod
    def of(cls, members: np.ndarray, nonmembers: np.ndarray) -> DistanceROC:
        """The ROC numbers of members' and non-members' distances (NaN distances count as 'not a member')."""
        members, nonmembers = (np.nan_to_num(np.asarray(d, float), nan=np.inf) for d in (members, nonmembers))
        if not len(members) or not len(nonmembers):
            return cls(math.nan, math.nan, math.nan)
        ranks = rankdata(np.concatenate([members, nonmembers]))
        above = ranks[len(members) :].sum() - len(nonmembers) * (len(nonmembers) + 1) / 2
        auc = float(above / (len(members) * len(nonmembers)))
        return cls(auc, *(tpr_at_fpr(members, nonmembers, fpr) for fpr in LOW_FPRS))

    def to_dict(self) -> dict:
        """The JSON form."""
        return asdict(self)


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> float:
    """The fraction of members strictly below the largest threshold that at most ``fpr`` of the non-members
    fall strictly below (the threshold set from the non-members alone)."""
    ordered = np.sort(nonmembers)
    allowed = int(math.floor(fpr * len(ordered)))
    threshold = ordered[allowed] if allowed < len(ordered) else np.inf
    return float((members < threshold).mean())


def roc_curve(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every threshold, from (0, 0) to (1, 1), for the figure."""
    thresholds = np.unique(np.concatenate([members, nonmembers, [np.inf]]))
    fpr = np.searchsorted(np.sort(nonmembers), thresholds, side="right") / max(len(nonmembers), 1)
    tpr = np.searchsorted(np.sort(members), thresholds, side="right") / max(len(members), 1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])
