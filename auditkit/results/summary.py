"""The headline counts of one audit (its summary), derived from the per-sample frame: what summary.json, the
gate and the report read."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from auditkit.storage.files import to_jsonable


@dataclass(frozen=True)
class LeakageSummary:
    """The headline counts of one audit, derived from its per-sample frame.

    ``identified`` is the headline (0 when nothing leaked); ``ssim_above_threshold`` is the paper's
    count, shown beside ``baseline_ssim_above_threshold`` (the training mean as the only candidate).
    """

    name: str
    n: int
    identified: int
    identified_fraction: float
    ssim_threshold: float
    ssim_above_threshold: int
    baseline_ssim_above_threshold: int
    median_ssim: float
    median_ssim_same_class: float  # each sample matched only among candidates carrying its label
    top10_mean_ssim: float
    identified_median_normalized_margin: float
    train_accuracy: float  # from the margins: the premise needs 1
    nonmembers: int
    nonmembers_identified: int  # false positives: the members' criterion applied to every non-member
    fpr: float
    p_value: float  # one-sided Fisher exact: members identified more often than non-members
    epsilon_lower: float  # the add/remove epsilon the run proves at 95 % (one-run test)
    verdict: str  # the premise check: conclusive, weak or inconclusive
    finding: str  # what the counts mean, in plain words
    warning: str
    attack: str = "kkt"  # the attack's registered name
    premise: dict[str, Any] = field(default_factory=dict)  # the attack's own headline numbers (its facts')
    confirmed: int = 0  # members the membership test singles out: identified, or below a distance's threshold
    rebuilt: int = 0  # identified and within 0.05 of every pixel (or SSIM >= 0.9): rebuilt almost exactly
    compared_by: str = "ssim"  # how candidates are scored: "ssim" (images) or "cosine" (embeddings: SSIM fields NaN)
    median_cosine: float = math.nan  # embeddings: each sample's best candidate's cosine similarity, median
    auc: float = math.nan  # the membership distance's ROC AUC (NaN: the attack has none)
    tpr_at_0_1pct_fpr: float = math.nan
    tpr_at_1pct_fpr: float = math.nan

    def metric(self, name: str) -> Any:
        """A headline number by name: a field, or one of the attack's premise numbers (NaN when absent)."""
        if name in self.premise:
            return self.premise[name]
        return getattr(self, name, math.nan)

    def to_dict(self) -> dict:
        """The JSON form: the fields, the attack's premise numbers beside them (one flat mapping)."""
        values = asdict(self)
        return to_jsonable({**values.pop("premise"), **values})
