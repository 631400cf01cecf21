"""The comparison table across victims and the one-line headline of each audit."""

from __future__ import annotations

import math

import pandas as pd

from auditkit.results.audit import AuditResult
from auditkit.results.run import VictimFailure

COMPARISON_COLUMNS = [
    "defense",
    "attack",
    "status",
    "verdict",
    "epsilon",
    "delta",
    "test_accuracy",
    "train_accuracy",
    "n",
    "identified",
    "identified_fraction",
    "confirmed",
    "rebuilt",
    "auc",
    "tpr_at_0_1pct_fpr",
    "tpr_at_1pct_fpr",
    "nonmembers_identified",
    "p_value",
    "epsilon_lower",
    "bound_identified",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "bound_ssim",
    "median_ssim",
    "median_ssim_same_class",
]  # then each attack's own headline numbers (its facts' HEADLINE)


def comparison(results: list[AuditResult], failures: list[VictimFailure] = ()) -> pd.DataFrame:
    """One row per victim: utility beside leakage (and the DP ceiling where there is one); a failed
    victim keeps its row, with the reason as its status."""
    columns = list(dict.fromkeys([*COMPARISON_COLUMNS, *(key for r in results for key in r.attack.HEADLINE)]))
    rows = []
    for result in results:
        summary = result.summary().to_dict()
        training = result.victim.training if result.victim else None
        privacy = training.privacy if training else None
        rows.append(
            {
                **{key: summary.get(key) for key in columns},
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
    return pd.DataFrame(rows, columns=columns)


def headline(result: AuditResult) -> str:
    """``[name] verdict: the finding in plain words``, then the numbers on the next line: identified k/n,
    non-members f/P, SSIM > t (mean-image baseline), test accuracy."""
    summary = result.summary()
    accuracy = result.victim.training.test_accuracy if result.victim else math.nan
    tested = "n/a (not measured)" if math.isnan(accuracy) else f"{accuracy:.3f}"
    membership = ""
    if not math.isnan(summary.auc):
        membership = (
            f"confirmed {summary.confirmed}/{summary.n} (ROC AUC {summary.auc:.3f}, TPR at 0.1 % FPR "
            f"{summary.tpr_at_0_1pct_fpr:.2f}), rebuilt {summary.rebuilt}; "
        )
    resemblance = (
        f"SSIM > {summary.ssim_threshold}: {summary.ssim_above_threshold} (mean-image baseline "
        f"{summary.baseline_ssim_above_threshold})"
        if summary.compared_by == "ssim"
        else f"embeddings compared by cosine (median {summary.median_cosine:.2f})"
    )
    return (
        f"[{summary.name}] {summary.verdict}: {summary.finding}\n    {membership}"
        f"identified {summary.identified}/{summary.n} ({100 * summary.identified_fraction:.0f}%), non-members "
        f"{summary.nonmembers_identified}/{summary.nonmembers}; {resemblance}; test accuracy {tested}"
        + (f"; {result.attack.sentence()}" if result.attack.sentence() else "")
    )


def privacy_sentence(result: AuditResult, undefended: AuditResult | None) -> str:
    """What one DP-SGD victim's point on the trade-off figure says, in one sentence: epsilon, what the
    attack identified and whether that is evidence, the ceiling, and the accuracy cost."""
    summary, privacy = result.summary(), result.privacy
    noise = "no noise (epsilon infinite)" if not privacy.noise_multiplier else f"epsilon {privacy.epsilon:.3g}"
    found = f"the attack identifies {summary.identified} of {summary.n}"
    premise = result.attack.sentence() or f"the {summary.attack} attack's premise"
    if summary.verdict == "conclusive":
        found += " (conclusive)"
    elif result.membership().significant:
        found += f", more than chance, but the verdict is {summary.verdict} ({premise}): a lower bound"
    else:
        found += f", but the verdict is {summary.verdict} ({premise}): no evidence either way"
    ceiling = ""
    if result.bounds:
        bound = result.bounds.identified.bound
        ceiling = f"; DP ceiling on the fraction identified {bound:.2g}" + (" (vacuous)" if bound >= 1 else "")
    accuracy = result.victim.training.test_accuracy if result.victim else math.nan
    cost = ""
    if undefended is not None and undefended.victim and not math.isnan(accuracy):
        points = 100 * (undefended.victim.training.test_accuracy - accuracy)
        cost = f"; test accuracy {accuracy:.3f}, {points:.1f} points below {undefended.name}"
    return f"At {noise} {found}{ceiling}{cost}."


def epsilon_of(result: AuditResult) -> float:
    """A DP victim's epsilon; infinite without noise (clipping alone), NaN for a victim without DP."""
    privacy = result.privacy
    if privacy is None:
        return math.nan
    return math.inf if privacy.epsilon is None or not privacy.noise_multiplier else float(privacy.epsilon)


def undefended(results: list[AuditResult]) -> list[AuditResult]:
    """The victims trained without any defense (kind none), the level a defense is compared against."""
    return [r for r in results if r.victim and r.victim.defense.get("kind", "none") == "none" and r.privacy is None]


def privacy_sentences(results: list[AuditResult]) -> list[str]:
    """One :func:`privacy_sentence` per DP-SGD victim, by epsilon, against the first undefended victim."""
    baseline = next(iter(undefended(results)), None)
    dp = sorted((r for r in results if r.privacy is not None), key=epsilon_of)
    return [f"{r.name}: " + privacy_sentence(r, baseline) for r in dp]
