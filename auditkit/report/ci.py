"""A finished run as a CI job shows it: JUnit XML (one test case per audit, failed by the release gate) and a
Markdown job summary (GitHub's ``GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree

from auditkit.results.run import RunResult
from auditkit.results.summary import LeakageSummary


def junit_xml(run: RunResult, reasons: list[str]) -> str:
    """The run as a JUnit ``testsuite``: a test case per audit, failed with the gate's ``reasons`` for it, its
    verdict and finding as the case's output; a victim that could not be audited is an error.

    Args:
        run: the finished run.
        reasons: the gate's failures (:func:`auditkit.running.gate.gate_failures`), each starting ``[name]``.

    Returns:
        The XML document.
    """
    summaries = run.summary()
    failed = {summary.name: _reasons_of(summary.name, reasons) for summary in summaries}
    suite = ElementTree.Element(
        "testsuite",
        name=f"auditkit {run.facts.scenario}",
        tests=str(len(summaries) + len(run.failures)),
        failures=str(sum(1 for found in failed.values() if found)),
        errors=str(len(run.failures)),
        time=f"{run.facts.seconds:.1f}" if math.isfinite(run.facts.seconds) else "0",
    )
    for summary in summaries:
        case = ElementTree.SubElement(suite, "testcase", classname="auditkit", name=summary.name)
        if found := failed[summary.name]:
            ElementTree.SubElement(case, "failure", message=found[0], type="release gate").text = "\n".join(found)
        ElementTree.SubElement(case, "system-out").text = f"{summary.verdict}: {summary.finding}\n{_counts(summary)}"
    for failure in run.failures:
        case = ElementTree.SubElement(suite, "testcase", classname="auditkit", name=failure.name)
        ElementTree.SubElement(case, "error", message=f"not audited: {failure.reason}", type="not audited")
    ElementTree.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def step_summary(run: RunResult, reasons: list[str], gated: bool) -> str:
    """The run as Markdown for a CI job's page: a row per audit (verdict, counts, membership, gate), then
    each finding, then the gate's result when ``gated``."""
    lines = [
        f"### auditkit: {run.facts.scenario}",
        "",
        "| audit | verdict | identified | non-members identified | confirmed (AUC) | gate |",
        "|---|---|---|---|---|---|",
    ]
    for summary in run.summary():
        membership = "n/a" if math.isnan(summary.auc) else f"{summary.confirmed}/{summary.n} ({summary.auc:.3f})"
        gate = ("failed" if _reasons_of(summary.name, reasons) else "passed") if gated else "-"
        lines.append(
            f"| {summary.name} | {summary.verdict} | {summary.identified}/{summary.n} | "
            f"{summary.nonmembers_identified}/{summary.nonmembers} | {membership} | {gate} |"
        )
    lines += [f"| {failure.name} | not audited | | | | failed |" for failure in run.failures]
    lines += ["", *(f"- **{summary.name}**: {summary.finding}" for summary in run.summary())]
    if gated:
        lines += ["", "Release gate: " + ("failed" if reasons else "passed"), *(f"- {reason}" for reason in reasons)]
    return "\n".join(lines) + "\n"


def _reasons_of(name: str, reasons: list[str]) -> list[str]:
    return [reason for reason in reasons if reason.startswith(f"[{name}] ")]


def _counts(summary: LeakageSummary) -> str:
    return (
        f"identified {summary.identified}/{summary.n}, non-members {summary.nonmembers_identified}/"
        f"{summary.nonmembers}, p = {summary.p_value:.3g}"
    )
