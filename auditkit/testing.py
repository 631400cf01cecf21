"""Helpers for pytest checks that keep attack strength (and defenses) from regressing.

from auditkit.testing import assert_leaks, assert_leaks_at_most
assert_leaks(model, data, KKTAttack(steps=3000), at_least=8)        # the attack still works
assert_leaks_at_most(dp_model, data, KKTAttack(steps=3000), at_most=0, allow_inconclusive=True)  # DP: the
# premise usually fails (the noise keeps the weights off a KKT point), so the check relies on the DP ceiling
"""

from __future__ import annotations

from torch import nn

from auditkit.attack import ReconstructionAttack
from auditkit.auditor import Auditor
from auditkit.data import AuditData
from auditkit.environment import DEFAULT_DTYPE
from auditkit.results import AuditResult


def _audit(model: nn.Module, data: AuditData, attack: ReconstructionAttack, seed: int, dtype: str) -> AuditResult:
    return Auditor(attack, device="cpu", dtype=dtype, seed=seed).audit(model, data)


def assert_leaks(
    model: nn.Module,
    data: AuditData,
    attack: ReconstructionAttack,
    at_least: int,
    seed: int = 0,
    dtype: str = DEFAULT_DTYPE,
) -> AuditResult:
    """Fail unless at least ``at_least`` training samples are identified from the weights."""
    result = _audit(model, data, attack, seed, dtype)
    identified = result.summary().identified
    assert identified >= at_least, f"attack identified {identified}/{len(data.train_x)}, expected >= {at_least}"
    return result


def assert_leaks_at_most(
    model: nn.Module,
    data: AuditData,
    attack: ReconstructionAttack,
    at_most: int,
    seed: int = 0,
    dtype: str = DEFAULT_DTYPE,
    allow_inconclusive: bool = False,
) -> AuditResult:
    """Fail if more than ``at_most`` training samples are identified from the weights, and also when the
    premise check is not conclusive (a defense check must not pass because the attack could not speak),
    unless ``allow_inconclusive`` (e.g. when the DP ceiling is what the check relies on)."""
    result = _audit(model, data, attack, seed, dtype)
    summary = result.summary()
    assert summary.identified <= at_most, f"attack identified {summary.identified}/{summary.n}, expected <= {at_most}"
    assert allow_inconclusive or summary.verdict == "conclusive", (
        f"the audit is {summary.verdict}, so identifying {summary.identified} proves nothing: {summary.finding}"
    )
    return result
