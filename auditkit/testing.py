"""pytest checks that keep attack strength (and defenses) from regressing: one audit, several assertions.

``audit`` takes what :meth:`auditkit.Auditor.audit` takes and returns the result once; the assertions
take that result (or a model and the same arguments, auditing it first)::

    from auditkit.testing import assert_leaks, assert_leaks_at_most, audit

    result = audit(model, train=(x, y), nonmembers=x_heldout, mean=pixel_mean, attack=KKTAttack(steps=3000))
    assert_leaks(result, at_least=8, report_to=tmp_path)  # the attack still works (a count)
    dp_result = audit(dp_model, train=(x, y), nonmembers=x_heldout, mean=pixel_mean, privacy=engine, delta=1e-5)
    assert_leaks_at_most(dp_result, at_most=0.05, allow_inconclusive=True)  # DP: a fraction; the ceiling speaks

A failure names the verdict, the finding and the identified samples, and with ``report_to`` (pytest's
``tmp_path``) saves the result and its report.html there and gives the path.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from auditkit.attacks.base import Attack
from auditkit.auditing.auditor import Auditor
from auditkit.environment import DEFAULT_DTYPE
from auditkit.report import write_report
from auditkit.results.audit import AuditResult
from auditkit.results.run import RunResult

MAX_LISTED = 20  # identified samples a failure names before it says how many more


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
        device: as for :class:`auditkit.Auditor`.
        dtype: as for :class:`auditkit.Auditor`.
        seed: as for :class:`auditkit.Auditor`.
        **inputs: what :meth:`auditkit.Auditor.audit` takes besides: ``train``, ``nonmembers``, ``mean``,
            ``image_shape``, ``privacy``, ``delta``, ``name``.

    Returns:
        The :class:`auditkit.AuditResult`.
    """
    return Auditor(attack, device=device, dtype=dtype, seed=seed).audit(model, data, **inputs)


def assert_leaks(
    subject: AuditResult | nn.Module,
    data=None,
    attack: Attack | None = None,
    *,
    at_least: int | float,
    report_to: str | Path | None = None,
    **options,
) -> AuditResult:
    """Fail unless at least ``at_least`` training samples are identified from the weights.

    A count that reaches ``at_least`` passes whatever the verdict (a leak found is found); a failure says the
    verdict and finding (when the attack did not converge, the fault may be its length, not its strength) and
    which samples were identified.

    Args:
        subject: an audit's result, or a model to audit first with ``data``, ``attack`` and ``options``
            (those of :func:`audit`).
        at_least: the fewest identified training samples that pass: a count (an int), or a fraction of the
            training samples (a float in [0, 1]).
        report_to: a folder (pytest's ``tmp_path``): on failure the result and its report.html are saved there
            and the message gives the path.

    Returns:
        The result, for further assertions.

    Example:
        >>> assert_leaks(result, at_least=0.2, report_to=tmp_path)  # doctest: +SKIP
    """
    result = _result(subject, data, attack, options)
    summary = result.summary()
    needed = _count(at_least, summary.n, "at_least")
    if summary.identified < needed:
        raise AssertionError(_failure(result, f"expected >= {_shown(at_least, needed)}", report_to))
    return result


def assert_leaks_at_most(
    subject: AuditResult | nn.Module,
    data=None,
    attack: Attack | None = None,
    *,
    at_most: int | float,
    allow_inconclusive: bool = False,
    report_to: str | Path | None = None,
    **options,
) -> AuditResult:
    """Fail if more than ``at_most`` training samples are identified from the weights, and also when the
    verdict is not conclusive (the victim off a KKT point, or the attack not converged: a defense check
    must not pass because the attack could not speak), unless ``allow_inconclusive`` (e.g. when the DP
    ceiling is what the check relies on). An audit the attack does not apply to (``not applicable``) fails
    unless ``allow_inconclusive`` too: it read nothing.

    Args:
        subject: an audit's result, or a model to audit first with ``data``, ``attack`` and ``options``
            (those of :func:`audit`).
        at_most: the most identified training samples that pass: a count (an int), or a fraction of the
            training samples (a float in [0, 1], as ``--fail-if 'identified_fraction > F'`` takes it).
        allow_inconclusive: pass a low count even when the verdict is not conclusive.
        report_to: a folder (pytest's ``tmp_path``): on failure the result and its report.html are saved there
            and the message gives the path.

    Returns:
        The result, for further assertions.

    Example:
        >>> assert_leaks_at_most(dp_result, at_most=0.05, allow_inconclusive=True, report_to=tmp_path)  # doctest: +SKIP
    """
    result = _result(subject, data, attack, options)
    summary = result.summary()
    allowed = _count(at_most, summary.n, "at_most")
    if summary.identified > allowed:
        raise AssertionError(_failure(result, f"expected <= {_shown(at_most, allowed)}", report_to))
    if not allow_inconclusive and summary.verdict != "conclusive":
        raise AssertionError(
            _failure(
                result, f"the audit is {summary.verdict}, so identifying {summary.identified} proves nothing", report_to
            )
        )
    return result


def _count(threshold: int | float, n: int, name: str) -> int:
    """A threshold as a count of the ``n`` training samples: an int as it is, a float in [0, 1] as a fraction
    (rounded up for at_least's sake and down for at_most's: the fraction is never loosened)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"{name}: expected a count (int) or a fraction (float in [0, 1]), got {threshold!r}")
    if isinstance(threshold, int):
        return threshold
    if not 0 <= threshold <= 1:
        raise ValueError(f"{name}: a fraction of the training samples lies in [0, 1], got {threshold!r}")
    return math.ceil(threshold * n - 1e-9) if name == "at_least" else math.floor(threshold * n + 1e-9)


def _shown(threshold: int | float, count: int) -> str:
    return str(count) if isinstance(threshold, int) else f"{count} ({threshold:.0%})"


def _failure(result: AuditResult, expectation: str, report_to: str | Path | None) -> str:
    """The failure message: the count against the expectation, the identified samples, the verdict and
    finding, and where the result and report were saved (when ``report_to`` is given)."""
    summary = result.summary()
    found = result.frame.loc[result.frame["identified"], "sample"].tolist()
    shown = ", ".join(map(str, found[:MAX_LISTED])) + (
        f", ... ({len(found)} in all)" if len(found) > MAX_LISTED else ""
    )
    lines = [
        f"attack identified {summary.identified}/{summary.n}, {expectation}",
        f"  identified samples: {shown or 'none'}",
        f"  verdict {summary.verdict}: {summary.finding}",
    ]
    if report_to is not None:
        folder = Path(report_to) / result.name
        result.save(folder)
        write_report(RunResult.of_audit(result), folder, victim_folders=False)
        lines.append(f"  report: {folder / 'report.html'}")
    return "\n".join(lines)


def _result(subject: AuditResult | nn.Module, data, attack: Attack | None, options: dict) -> AuditResult:
    if isinstance(subject, AuditResult):
        if data is not None or attack is not None or options:
            raise TypeError("an AuditResult is already audited: give it alone, or give the model to audit")
        return subject
    return audit(subject, data, attack=attack, **options)
