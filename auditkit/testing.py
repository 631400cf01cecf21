"""Helpers for pytest checks that keep attack strength (and defenses) from regressing.

from auditkit.testing import assert_leaks, assert_leaks_at_most
assert_leaks(model, data, KKTAttack(steps=3000), at_least=8)        # the attack still works
assert_leaks_at_most(dp_model, data, KKTAttack(steps=3000), at_most=0)  # the defense still holds
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
) -> AuditResult:
    """Fail if more than ``at_most`` training samples are identified from the weights."""
    result = _audit(model, data, attack, seed, dtype)
    identified = result.summary().identified
    assert identified <= at_most, f"attack identified {identified}/{len(data.train_x)}, expected <= {at_most}"
    return result
