"""report.html: one self-contained page (tables and embedded figures) that opens in any browser."""

from __future__ import annotations

import base64
import html

import pandas as pd

from auditkit.results import AttackFacts, AuditResult, RunResult

HEADLINE = (
    "<p><b>identified</b> is the headline: the reconstruction matched to a training sample is closer (normalised "
    "cross-correlation) to that sample than to any other member or held-out non-member. It reads 0 when nothing "
    "leaked. The paper's raw count (SSIM &gt; threshold) is shown beside its no-attack baseline (the training mean "
    "as the only candidate), which passes it too.</p>"
)
PAPER_REFERENCE = (
    "<p><b>For comparison</b>: Haim, Vardi, Yehudai, Shamir, Irani, NeurIPS 2022, Fig. 4 (MNIST parity, n=500, "
    "784-1000-1000-1, full-batch GD lr 0.01, 1e6 epochs, float64): a large fraction of the training set "
    "reconstructed (SSIM &gt; 0.4 with a 3x3 window); the reconstructed samples are the ones with the smallest "
    "margins. The paper counts raw SSIM &gt; 0.4, which the mean image alone also passes: compare it with the "
    "baseline, and read <b>identified</b> as the headline.</p>"
)


VERDICTS = (
    "<p><b>premise</b>: the attack speaks only about a model near a KKT point of the max-margin problem that "
    "fits its training set. <i>conclusive</i>: KKT residual at the training set &le; 0.3 and training accuracy "
    "1, so a low count means little leakage; <i>weak</i>: residual 0.3-0.7, counts under-state the leakage; "
    "<i>inconclusive</i>: residual &gt; 0.7 or training error: a low count says nothing. Members are tested "
    "against non-members treated alike (one-sided Fisher exact test; the privacy loss epsilon the counts imply, "
    "at 95 %, from Clopper-Pearson intervals).</p>"
)


def _finding(result: AuditResult) -> str:
    summary = result.summary()
    return f"<p><b>{html.escape(result.name)}</b> (premise {summary.verdict}): {html.escape(summary.finding)}</p>"


def _image(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    encoded = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}" style="max-width:100%">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="", border=0, classes="t")


def _attack(attack: AttackFacts) -> str:
    """Which restarts were kept and why: the selection rule is part of the result."""
    rows = pd.DataFrame(
        {
            "restart": range(attack.restarts),
            **attack.restart_settings,
            "last loss": attack.final_loss,
            "score": attack.restart_scores,
            "fate": [
                "pooled"
                if r in attack.selected_restarts
                else "early-stopped"
                if r in attack.early_stopped_restarts
                else "not selected"
                for r in range(attack.restarts)
            ],
        }
    )
    return (
        f"<p>Attack: {attack.restarts} restart(s), {attack.dtype} on {html.escape(attack.device)}, "
        f"{attack.seconds:.0f}s; selection rule <b>{html.escape(attack.selection_rule)}</b>: "
        f"{html.escape(attack.selection)}; {len(attack.diverged)} restart(s) diverged.</p>"
        + "<details><summary>restarts</summary>"
        + _table(rows)
        + "</details>"
    )


def _victim(result: AuditResult, grid_png: bytes | None) -> list[str]:
    parts = [f"<h2>{html.escape(result.name)}</h2>"]
    bounds = result.bounds
    if bounds:
        rows = [
            {
                "criterion": b.criterion,
                "kappa": b.kappa,
                "tries (m)": b.tries,
                "DP ceiling": b.bound,
                "measured": b.measured,
                "within": b.within,
                "vacuous": b.vacuous,
            }
            for b in (bounds.identified, bounds.ssim)
        ]
        parts += [
            f"<p>{html.escape(bounds.mechanism)}; holds for {html.escape(bounds.holds_for)}.</p>",
            _table(pd.DataFrame(rows)),
        ]
    parts.append(_attack(result.attack))
    parts.append(_image(grid_png, f"{result.name} reconstructions"))
    exposed = result.frame.sort_values(["identified", "ssim"], ascending=False).head(20)
    parts.append("<details><summary>20 most exposed samples</summary>" + _table(exposed) + "</details>")
    return parts


def render(run: RunResult, comparison: pd.DataFrame, figures: dict[str, bytes]) -> str:
    """The page for ``run``; ``figures``: "ssim_vs_margin" and one reconstruction grid per victim name."""
    facts = run.facts
    parts = [
        f"<h1>auditkit leakage report: {html.escape(facts.scenario)}</h1>",
        f"<p>seed {facts.seed} &middot; {html.escape(facts.device)} &middot; "
        f"<span title='{html.escape(facts.dtype_note)}'>{facts.dtype}</span> "
        f"&middot; {facts.seconds:.0f}s &middot; "
        + ", ".join(f"{k} {html.escape(str(v))}" for k, v in facts.versions.items())
        + "</p>",
        "<h2>Findings</h2>",
        *(_finding(result) for result in run.victims),
        *(f"<p><b>{html.escape(f.name)}</b>: not audited: {html.escape(f.reason)}</p>" for f in run.failures),
        HEADLINE,
        VERDICTS,
        PAPER_REFERENCE,
        "<h2>Victims</h2>",
        _table(comparison),
        _image(figures.get("ssim_vs_margin"), "SSIM vs margin"),
    ]
    for result in run.victims:
        parts += _victim(result, figures.get(result.name))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>auditkit report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
