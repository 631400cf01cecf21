"""The premise check: whether a low count from the KKT attack can be read as little leakage.

The attack speaks only about a model near a KKT point of the max-margin problem that fits its training
set. Thresholds on the victim's KKT residual (at the true training set, multipliers fitted) come from
measured victims (MNIST parity, 784-500-500-1; issues 11 and 14): residual 0.11-0.15 identified 31-53
samples (conclusive); 0.55 identified 12 of 100 where the same recipe trained longer (0.11) identified 53
(weak: a count under-states); 0.96-0.999 identified 0-1 whatever the model holds (inconclusive).
Uncentred inputs (raw [0, 1] pixels) are weak too: on the same 20 digits and recipe the attack identified
4-6 of 20 on raw pixels against 18-20 of 20 centred, 3 seeds (benchmarks/results/input_preparation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from auditkit.bounds import VACUOUS_CEILING
from auditkit.convergence import Convergence
from auditkit.membership import MembershipTest

CONCLUSIVE_RESIDUAL = 0.3
WEAK_RESIDUAL = 0.7
Level = Literal["conclusive", "weak", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """The premise check's level, its reasons, and the finding in plain words."""

    level: Level
    reasons: tuple[str, ...]
    finding: str


def premise_verdict(
    kkt_residual: float,
    train_accuracy: float,
    test: MembershipTest,
    dp_epsilon: float | None = None,
    centred: bool = True,
    dp_ceiling: float | None = None,
    convergence: Convergence | None = None,
    recognisable: int | None = None,
) -> Verdict:
    """Judge both premises, the victim's (KKT residual, zero training error, centred inputs) and the
    attack's (it converged), and say what the counts mean.

    dp_ceiling: the DP reconstruction ceiling on the fraction identified, when the model was trained with DP.
    convergence: how far the attack got; None when only the victim is judged (e.g. before an attack runs).
    recognisable: how many identified samples' matches resemble them more than the mean image does (SSIM);
    when under a quarter of the identified, the candidates single samples out without being recognisable.
    """
    reasons = []
    if math.isnan(kkt_residual) or kkt_residual > WEAK_RESIDUAL:
        reasons.append(
            f"the weights are far from a KKT point (residual {kkt_residual:.2f} > {WEAK_RESIDUAL}): the attack's "
            "premise fails"
        )
    elif kkt_residual > CONCLUSIVE_RESIDUAL:
        reasons.append(
            f"the weights are only near a KKT point (residual {kkt_residual:.2f} > {CONCLUSIVE_RESIDUAL}): "
            "counts under-state the leakage"
        )
    if not centred:
        reasons.append(
            "the inputs are not centred (raw pixels): the attack was measured weaker there, so counts under-state "
            "the leakage"
        )
    if not train_accuracy == 1.0:
        reasons.append(f"the model does not fit its training set (accuracy {train_accuracy:.3f}; the premise needs 1)")
    far = any("far from" in r or "does not fit" in r for r in reasons)
    if convergence is not None and convergence.level != "converged":
        reasons.append(convergence.reason())
        far = far or convergence.level == "not_converged"
    level: Level = "inconclusive" if far else "weak" if reasons else "conclusive"
    identified = f"{test.members_identified} of {test.members} training samples"
    chance = f"{test.nonmembers_identified} of {test.nonmembers} non-members"
    implied = f" (privacy loss at least epsilon = {test.epsilon_lower:.2g} at 95 %)" if test.epsilon_lower > 0 else ""
    faint = recognisable is not None and 4 * recognisable < test.members_identified
    if test.significant and faint:
        finding = (
            f"The candidates single out {identified}, against {chance} (p = {test.p_value:.2g}), but they are not "
            f"recognisable reconstructions ({recognisable} resemble their sample more than the mean image does, by "
            f"SSIM): the weights reveal which samples were trained on{implied}, not yet what they look like."
        )
        if reasons:
            finding += f" The count is a lower bound: {'; '.join(reasons)}."
    elif test.significant:
        finding = (
            f"{identified} were reconstructed and identified, against {chance} (p = {test.p_value:.2g}): the "
            f"weights leak these samples{implied}."
        )
        if reasons:
            finding += f" The count is a lower bound: {'; '.join(reasons)}."
    elif level == "conclusive":
        finding = (
            f"{identified} identified, against {chance}: no evidence of leakage beyond chance, and the premise "
            "holds, so this attack finds little to reconstruct."
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
            "bounds the leakage this attack cannot see."
        )
    return Verdict(level, tuple(reasons), finding)
