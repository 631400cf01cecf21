"""The comparison table across victims and the one-line headline of each audit."""

from __future__ import annotations

import math

import pandas as pd

from auditkit.results import AuditResult, VictimFailure

COMPARISON_COLUMNS = [
    "defense",
    "status",
    "verdict",
    "epsilon",
    "delta",
    "test_accuracy",
    "train_accuracy",
    "n",
    "identified",
    "identified_fraction",
    "nonmembers_identified",
    "p_value",
    "epsilon_lower",
    "bound_identified",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "bound_ssim",
    "median_ssim",
    "victim_kkt_residual",
    "attack_relative_residual",
]


def comparison(results: list[AuditResult], failures: list[VictimFailure] = ()) -> pd.DataFrame:
    """One row per victim: utility beside leakage (and the DP ceiling where there is one); a failed
    victim keeps its row, with the reason as its status."""
    rows = []
    for result in results:
        summary = result.summary().to_dict()
        training = result.victim.training if result.victim else None
        privacy = training.privacy if training else None
        rows.append(
            {
                **{key: summary.get(key) for key in COMPARISON_COLUMNS},
                "defense": result.name,
                "status": f"attack failed: {summary['warning']}" if summary["warning"] else "audited",
                "epsilon": privacy.epsilon if privacy else None,
                "delta": privacy.delta if privacy else None,
                "test_accuracy": training.test_accuracy if training else None,
                "train_accuracy": training.train_accuracy if training else summary["train_accuracy"],
                "bound_identified": result.bounds.identified.bound if result.bounds else None,
                "bound_ssim": result.bounds.ssim.bound if result.bounds else None,
            }
        )
    rows += [{"defense": failure.name, "status": f"failed: {failure.reason}"} for failure in failures]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def headline(result: AuditResult) -> str:
    """``[name] verdict: the finding in plain words``, then the numbers on the next line: identified k/n,
    non-members f/P, SSIM > t (mean-image baseline), test accuracy."""
    summary = result.summary()
    accuracy = result.victim.training.test_accuracy if result.victim else math.nan
    tested = "n/a (not measured)" if math.isnan(accuracy) else f"{accuracy:.3f}"
    return (
        f"[{summary.name}] {summary.verdict}: {summary.finding}\n"
        f"    identified {summary.identified}/{summary.n} ({100 * summary.identified_fraction:.0f}%), non-members "
        f"{summary.nonmembers_identified}/{summary.nonmembers}; SSIM > {summary.ssim_threshold}: "
        f"{summary.ssim_above_threshold} (mean-image baseline {summary.baseline_ssim_above_threshold}); "
        f"test accuracy {tested}"
    )
