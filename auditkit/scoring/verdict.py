"""The verdict: whether an audit's counts can be read at face value, and the finding in plain words.

The attack says where its premise falls short for this victim (:meth:`AttackFacts.concerns`, e.g. the KKT
attack: the victim's KKT residual, its training error, uncentred inputs, the attack's convergence). Any
fatal concern makes a low count say nothing (inconclusive); any other makes the counts a lower bound (weak);
none is conclusive. The members-vs-non-members test says whether anything leaked beyond chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from auditkit.scoring.bounds import VACUOUS_CEILING
from auditkit.scoring.membership import MembershipTest

Level = Literal["conclusive", "weak", "inconclusive", "not applicable"]


@dataclass(frozen=True)
class Concern:
    """One way an attack's premise falls short for this victim: ``fatal`` when a low count then says
    nothing (the verdict reads inconclusive), else it under-states the leakage (weak)."""

    reason: str
    fatal: bool


@dataclass(frozen=True)
class Verdict:
    """The verdict's level, its reasons, and the finding in plain words."""

    level: Level
    reasons: tuple[str, ...]
    finding: str


def judge(
    concerns: Sequence[Concern],
    test: MembershipTest,
    dp_epsilon: float | None = None,
    dp_ceiling: float | None = None,
    recognisable: int | None = None,
    backed: str = "",
    *,
    inapplicable: str = "",
    confirmed: bool = False,
    rebuilt: int = 0,
    bounding_epsilon: float | None = None,
) -> Verdict:
    """Judge the attack's concerns and say what the counts mean.

    Args:
        concerns: where the attack's premise falls short for this victim.
        test: identified members against identified non-members.
        dp_epsilon: the model's epsilon, when it was trained with DP.
        dp_ceiling: the DP reconstruction ceiling on the fraction identified, when trained with DP.
        recognisable: how many identified samples' matches resemble them more than the mean image does (SSIM);
            under a quarter of the identified, the finding says so and leaves the pictures to judge.
        backed: what makes a null result evidence (the attack's start control), for the finding; without it a
            null result is never read as an all-clear (the attack's concerns say why).
        inapplicable: why the attack cannot read this model at all: the level is then 'not applicable', and the
            finding says it is no evidence either way.
        confirmed: the test counts members confirmed by a membership distance, not reconstructed ones.
        rebuilt: how many of them were rebuilt almost exactly (said when any was).
        bounding_epsilon: the epsilon below which the DP ceiling would bound this attack
            (:func:`auditkit.scoring.bounds.bounding_epsilon`), said when the model's ceiling is vacuous.

    Returns:
        The level (conclusive, weak, inconclusive, not applicable), the reasons and the finding.
    """
    if inapplicable:
        finding = f"This attack does not apply to this model: {inapplicable}. That is no evidence either way."
        return Verdict("not applicable", (inapplicable,), finding)
    reasons = [concern.reason for concern in concerns]
    level: Level = "inconclusive" if any(c.fatal for c in concerns) else "weak" if concerns else "conclusive"
    identified = f"{test.members_identified} of {test.members} training samples"
    chance = f"{test.nonmembers_identified} of {test.nonmembers} non-members"
    implied = f" (privacy loss at least epsilon = {test.epsilon_lower:.2g} at 95 %)" if test.epsilon_lower > 0 else ""
    faint = recognisable is not None and 4 * recognisable < test.members_identified
    lower_bound = f" The count is a lower bound: {'; '.join(reasons)}." if reasons else ""
    if test.significant and confirmed:
        finding = (
            f"Anyone holding these weights can confirm {test.members_identified} of your {test.members} training "
            f"samples (against {chance}, "
            f"p = {test.p_value:.2g}), and rebuild {rebuilt} of them almost exactly{implied}."
        )
        finding += lower_bound
    elif test.significant:
        finding = (
            f"{identified} were reconstructed and identified, against {chance} (p = {test.p_value:.2g}): the "
            f"weights leak these samples{implied}."
        )
        if faint:
            finding += (
                f" By SSIM only {recognisable} of the matches resemble their sample more than the training mean "
                "does: the pictures show how recognisable they are."
            )
        finding += lower_bound
    elif level == "conclusive":
        finding = (
            f"{identified} identified, against {chance}: this attack finds no leakage beyond chance. Its premise "
            f"holds{f' and, {backed},' if backed else ''} so the count is evidence about this attack, not a "
            "guarantee against others."
        )
    else:
        finding = (
            f"{identified} identified, against {chance}, but {'; '.join(reasons)}. A low count is NOT evidence "
            "that this model does not leak."
        )
    if dp_epsilon is not None and level != "conclusive":
        finding += f" The model was trained with DP (epsilon {dp_epsilon:.3g}): " + (
            f"the DP ceiling bounds any attack at {dp_ceiling:.0%} of the training samples identified."
            if dp_ceiling is not None and dp_ceiling < VACUOUS_CEILING
            else "at that epsilon the DP ceiling is vacuous (any attack may identify every sample), so nothing "
            "bounds the leakage this attack cannot see" + _bounding(bounding_epsilon)
        )
    return Verdict(level, tuple(reasons), finding)


def _bounding(epsilon: float | None) -> str:
    """Where a vacuous DP ceiling would start to bound something, as the end of the finding's sentence."""
    if epsilon is None:
        return "."
    if epsilon <= 0:
        return "; no epsilon would: the attack's candidates may cover every member and non-member by chance."
    return f"; the ceiling falls below 1 only at epsilon under {epsilon:.3g} (with this delta and attack)."


def resemblance_note(test: MembershipTest, above: int, baseline: int, n: int, threshold: float) -> str:
    """What to add to a finding when reconstructions resemble training images (SSIM) without singling
    any out (e.g. classes whose images all look alike): the class leaks, not the samples.

    Args:
        test: identified members against identified non-members.
        above: samples whose best SSIM passes ``threshold``.
        baseline: samples the mean image alone passes it for.
        n: training samples.
        threshold: the SSIM threshold.

    Returns:
        A sentence starting with a space, or '' when there is nothing to add.
    """
    if test.significant or above - baseline < n / 4:
        return ""
    return (
        f" The reconstructions do resemble training images (SSIM > {threshold:g} for {above} of {n}; {baseline} for "
        "the mean image) without singling any out from the non-members: they reveal what a class looks like, "
        "not which samples were trained on."
    )
