"""A release gate for pipelines: conditions on an audit's headline numbers that fail the build.

``identified_fraction > 0.05`` fails when more than 5 % of the training samples were identified. A gate
also fails on an audit whose verdict is not ``conclusive`` (the attack could not speak, so passing would
mean nothing) unless the owner allows it.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, fields

from auditkit.attacks.registry import ATTACKS, attack_names
from auditkit.errors import ConfigError
from auditkit.results.run import RunResult
from auditkit.results.summary import LeakageSummary

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}


def metrics() -> list[str]:
    """The numbers a condition may test: the summary's own, and every registered attack's headline numbers."""
    attack_names()  # the built-in attacks are registered on first use
    numbers = {f.name for f in fields(LeakageSummary) if f.type in ("int", "float")} - {"n", "ssim_threshold"}
    headline = {key for attack in ATTACKS.values() for key in attack.facts_type.HEADLINE}
    return sorted(numbers | headline - {"attack_convergence"})


_CONDITION = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Condition:
    """``metric op value``: the audit fails the gate when it holds for any victim."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``METRIC OP NUMBER`` as a condition; anything else raises ConfigError naming the text."""
        match = _CONDITION.match(text)
        if match is None:
            raise ConfigError(f"--fail-if {text!r}: expected 'METRIC OP NUMBER', e.g. 'identified_fraction > 0.05'")
        metric, op, number = match.groups()
        if metric not in metrics():
            raise ConfigError(f"--fail-if {text!r}: unknown metric '{metric}'; allowed: {', '.join(metrics())}")
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(f"--fail-if {text!r}: '{number}' is not a number") from None
        return cls(metric, op, value)

    def holds(self, summary: LeakageSummary) -> bool:
        """Whether the condition holds for ``summary`` (a NaN measurement never does)."""
        measured = summary.metric(self.metric)
        return not math.isnan(measured) and OPERATORS[self.op](measured, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def gate_failures(run: RunResult, conditions: list[Condition], allow_inconclusive: bool = False) -> list[str]:
    """Why ``run`` fails the gate, one line per reason (empty: it passes)."""
    reasons = []
    for summary in run.summary():
        for condition in conditions:
            if condition.holds(summary):
                measured = summary.metric(condition.metric)
                reasons.append(f"[{summary.name}] {condition.metric} = {measured:.4g}: {condition} holds")
        if summary.verdict not in ("conclusive", "not applicable") and not allow_inconclusive:  # n/a: no reading
            reasons.append(
                f"[{summary.name}] verdict {summary.verdict}: the attack cannot vouch for a low count "
                "(--allow-inconclusive to accept)"
            )
    reasons.extend(f"[{failure.name}] not audited: {failure.reason}" for failure in run.failures)
    return reasons
