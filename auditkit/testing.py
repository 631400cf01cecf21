"""pytest checks that keep attack strength (and defenses) from regressing: one audit, several assertions.

``audit`` takes what :meth:`auditkit.Auditor.audit` takes and returns the result once; the assertions
take that result (or a model and the same arguments, auditing it first)::

    from auditkit.testing import assert_leaks, assert_leaks_at_most, audit

    result = audit(model, train=(x, y), nonmembers=x_heldout, mean=pixel_mean, attack=KKTAttack(steps=3000))
    assert_leaks(result, at_least=8)  # the attack still works
    dp_result = audit(dp_model, train=(x, y), nonmembers=x_heldout, mean=pixel_mean, privacy=engine, delta=1e-5)
    assert_leaks_at_most(dp_result, at_most=0, allow_inconclusive=True)  # DP: the ceiling speaks
"""

from __future__ import annotations

from torch import nn

from auditkit.attacks.base import Attack
from auditkit.auditing.auditor import Auditor
from auditkit.environment import DEFAULT_DTYPE
from auditkit.results.audit import AuditResult


def audit(
    model: nn.Module,
    data=None,
    *,
    attack: Attack | None = None,
    device: str = "auto",
    dtype: str = DEFAULT_DTYPE,
    seed: int = 0,
    **inputs,
) -> AuditResult:
    """Audit ``model`` once, for several assertions.

    Args:
        model: the trained network (see :meth:`auditkit.Auditor.audit`).
        data: an ``AuditData``, ``(inputs, labels)``, a Dataset or a DataLoader (or give ``train=``).
        attack: the attack (default: ``KKTAttack()``, the default attack).
        device, dtype, seed: as for :class:`auditkit.Auditor`.
        **inputs: what :meth:`auditkit.Auditor.audit` takes besides: ``train``, ``nonmembers``, ``mean``,
            ``image_shape``, ``privacy``, ``delta``, ``name``.

    Returns:
        The :class:`auditkit.AuditResult`.
    """
    return Auditor(attack, device=device, dtype=dtype, seed=seed).audit(model, data, **inputs)


def assert_leaks(
    subject: AuditResult | nn.Module, data=None, attack: Attack | None = None, *, at_least: int, **options
) -> AuditResult:
    """Fail unless at least ``at_least`` training samples are identified from the weights.

    A count that reaches ``at_least`` passes whatever the verdict (a leak found is found); a failure says
    when the attack did not converge (then the fault may be the attack's length, not its strength).

    Args:
        subject: an audit's result, or a model to audit first with ``data``, ``attack`` and ``options``
            (those of :func:`audit`).
        at_least: the fewest identified training samples that pass.

    Returns:
        The result, for further assertions.
    """
    result = _result(subject, data, attack, options)
    summary = result.summary()
    assert summary.identified >= at_least, (
        f"attack identified {summary.identified}/{summary.n}, expected >= {at_least} (verdict {summary.verdict}: "
        f"{summary.finding})"
    )
    return result


def assert_leaks_at_most(
    subject: AuditResult | nn.Module,
    data=None,
    attack: Attack | None = None,
    *,
    at_most: int,
    allow_inconclusive: bool = False,
    **options,
) -> AuditResult:
    """Fail if more than ``at_most`` training samples are identified from the weights, and also when the
    verdict is not conclusive (the victim off a KKT point, or the attack not converged: a defense check
    must not pass because the attack could not speak), unless ``allow_inconclusive`` (e.g. when the DP
    ceiling is what the check relies on).

    Args:
        subject: an audit's result, or a model to audit first with ``data``, ``attack`` and ``options``
            (those of :func:`audit`).
        at_most: the most identified training samples that pass.
        allow_inconclusive: pass a low count even when the verdict is not conclusive.

    Returns:
        The result, for further assertions.
    """
    result = _result(subject, data, attack, options)
    summary = result.summary()
    assert summary.identified <= at_most, f"attack identified {summary.identified}/{summary.n}, expected <= {at_most}"
    assert allow_inconclusive or summary.verdict == "conclusive", (
        f"the audit is {summary.verdict}, so identifying {summary.identified} proves nothing: {summary.finding}"
    )
    return result


def _result(subject: AuditResult | nn.Module, data, attack: Attack | None, options: dict) -> AuditResult:
    if isinstance(subject, AuditResult):
        if data is not None or attack is not None or options:
            raise TypeError("an AuditResult is already audited: give it alone, or give the model to audit")
        return subject
    return audit(subject, data, attack=attack, **options)
