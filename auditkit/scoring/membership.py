"""Members against non-members: whether identification is evidence of membership, with exact intervals.

Every non-member of the pool is treated like a training sample (a candidate nearest to it that is closer
to it than to any other image 'identifies' it). The identified fractions of members (TPR) and
non-members (FPR) get Clopper-Pearson 95 % intervals, and a one-sided Fisher exact test asks whether
members are identified more often. The privacy loss the run proves is Steinke, Nasr and Jagielski's
exact one-run bound on members paired with random non-members (:mod:`auditkit.scoring.one_run`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, fisher_exact

from auditkit.scoring.one_run import PairedGuesses, paired_guesses

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


def _interval(successes: int, trials: int) -> tuple[float, float]:
    if trials == 0:
        return (math.nan, math.nan)
    ci = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return (float(ci.low), float(ci.high))


def more_often(hits: int, trials: int, other_hits: int, other_trials: int) -> float:
    """The one-sided Fisher exact p-value of 'the first group's rate is higher than the second's' (NaN when a
    group is empty)."""
    if not trials or not other_trials:
        return math.nan
    table = [[hits, trials - hits], [other_hits, other_trials - other_hits]]
    return float(fisher_exact(table, alternative="greater").pvalue)


@dataclass(frozen=True)
class MembershipTest:
    """Identified members and non-members, their exact intervals, the test and the epsilon they prove."""

    members: int
    members_identified: int
    nonmembers: int
    nonmembers_identified: int
    delta: float = 0.0  # the victim's DP delta (0 for a model trained without DP)
    paired: PairedGuesses | None = None  # the one-run guesses; None: no epsilon is claimed

    @classmethod
    def from_flags(
        cls,
        member_identified: np.ndarray,
        nonmember_identified: np.ndarray,
        delta: float,
        seed: int,
        labels: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> MembershipTest:
        """The test of per-image identification flags; with ``labels`` (members', non-members') the one-run
        guesses too, paired within labels by ``seed``'s stream (without them no epsilon is claimed)."""
        member_identified = np.asarray(member_identified, dtype=bool)
        nonmember_identified = np.asarray(nonmember_identified, dtype=bool)
        paired = None
        if labels is not None:
            paired = paired_guesses(member_identified, labels[0], nonmember_identified, labels[1], seed)
        return cls(
            len(member_identified),
            int(member_identified.sum()),
            len(nonmember_identified),
            int(nonmember_identified.sum()),
            delta,
            paired,
        )

    @property
    def tpr(self) -> float:
        """The fraction of members identified."""
        return self.members_identified / self.members if self.members else math.nan

    @property
    def fpr(self) -> float:
        """The fraction of non-members identified (false positives)."""
        return self.nonmembers_identified / self.nonmembers if self.nonmembers else math.nan

    @property
    def tpr_interval(self) -> tuple[float, float]:
        """The 95 % Clopper-Pearson interval of the members' rate."""
        return _interval(self.members_identified, self.members)

    @property
    def fpr_interval(self) -> tuple[float, float]:
        """The 95 % Clopper-Pearson interval of the non-members' rate."""
        return _interval(self.nonmembers_identified, self.nonmembers)

    @property
    def p_value(self) -> float:
        """One-sided Fisher exact test of 'members are identified more often than non-members'."""
        return more_often(self.members_identified, self.members, self.nonmembers_identified, self.nonmembers)

    @property
    def significant(self) -> bool:
        """Whether members are identified more often than non-members (p < SIGNIFICANCE)."""
        return self.p_value < SIGNIFICANCE

    @property
    def epsilon_lower(self) -> float:
        """The add/remove epsilon the run proves at 95 % (Steinke et al.'s one-run test; 0 when it proves none)."""
        return self.paired.epsilon_lower(self.delta, SIGNIFICANCE) if self.paired else 0.0

    def to_dict(self) -> dict:
        """The JSON form, with the derived rates and test."""
        return {
            **asdict(self),
            "tpr": self.tpr,
            "tpr_interval": list(self.tpr_interval),
            "fpr": self.fpr,
            "fpr_interval": list(self.fpr_interval),
            "p_value": self.p_value,
            "significant": self.significant,
            "epsilon_lower": self.epsilon_lower,
        }
