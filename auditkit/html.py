"""report.html: one self-contained page (tables and embedded figures) that opens in any browser."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from auditkit.io import write_text

HEADLINE = (
    "<p><b>identified</b> is the headline: the reconstruction matched to a training sample is closer (normalised "
    "cross-correlation) to that sample than to any other member or held-out non-member. It reads 0 when nothing "
    "leaked. The paper's raw count (SSIM &gt; threshold) is shown beside its no-attack baseline (the training mean "
    "as the only candidate), which passes it too.</p>"
)


def _image(path: Path) -> str:
    if not path.is_file():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{encoded}" style="max-width:100%">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="", border=0, classes="t")


def _paper(victims: list[dict]) -> str:
    reference = victims[0].get("paper_reference") if victims else None
    if not reference:
        return ""
    return (
        f"<p><b>For comparison</b>: {html.escape(reference['source'])} ({html.escape(reference['setting'])}): "
        f"{html.escape(reference['finding'])}. {html.escape(reference['note'])}.</p>"
    )


def _attack(attack: dict) -> str:
    """Which restarts were kept and why: the selection rule is part of the result."""
    settings = attack["restart_settings"]
    rows = pd.DataFrame(
        {
            "restart": range(attack["restarts"]),
            **{key: settings[key] for key in settings},
            "last loss": attack["final_loss"],
            "score": attack["restart_scores"],
            "fate": [
                "pooled"
                if r in attack["selected_restarts"]
                else "early-stopped"
                if r in attack["early_stopped_restarts"]
                else "not selected"
                for r in range(attack["restarts"])
            ],
        }
    )
    return (
        f"<p>Attack: {attack['restarts']} restart(s), {attack['dtype']} on {html.escape(attack['device'])}, "
        f"{attack['seconds']:.0f}s; selection rule <b>{html.escape(attack['selection_rule'])}</b>: "
        f"{html.escape(attack['selection'])}; {len(attack['diverged'])} restart(s) diverged.</p>"
        + "<details><summary>restarts</summary>"
        + _table(rows)
        + "</details>"
    )


def render(out: str | Path, summary: dict) -> Path:
    """Write ``out/report.html`` from a run's summary and the files already in ``out``."""
    out = Path(out)
    victims = summary["victims"]
    parts = [
        f"<h1>auditkit leakage report: {html.escape(summary['scenario'])}</h1>",
        f"<p>seed {summary['seed']} &middot; {html.escape(summary['device'])} &middot; "
        f"<span title='{html.escape(summary.get('dtype_note', ''))}'>{summary['dtype']}</span> "
        f"&middot; {summary['seconds']:.0f}s &middot; "
        + ", ".join(f"{k} {html.escape(str(v))}" for k, v in summary["versions"].items())
        + "</p>",
        HEADLINE,
        _paper(victims),
        "<h2>Victims</h2>",
        _table(pd.DataFrame(summary["comparison"])),
        _image(out / "ssim_vs_margin.png"),
    ]
    for victim in victims:
        name = victim["name"]
        parts.append(f"<h2>{html.escape(name)}</h2>")
        bounds = victim.get("bounds")
        if bounds:
            rows = [
                {
                    "criterion": b["criterion"],
                    "kappa": b["kappa"],
                    "tries (m)": b["tries"],
                    "DP ceiling": b["bound"],
                    "measured": b["measured"],
                    "within": b["within"],
                    "vacuous": b["vacuous"],
                }
                for b in (bounds["identified"], bounds["ssim"])
            ]
            parts += [
                f"<p>{html.escape(bounds['mechanism'])}; holds for {html.escape(bounds['bounds_hold_for'])}.</p>",
                _table(pd.DataFrame(rows)),
            ]
        parts.append(_attack(victim["attack"]))
        parts.append(_image(out / name / "reconstructions.png"))
        per_sample = out / name / "per_sample.csv"
        if per_sample.is_file():
            frame = pd.read_csv(per_sample).sort_values(["identified", "ssim"], ascending=False).head(20)
            parts.append("<details><summary>20 most exposed samples</summary>" + _table(frame) + "</details>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>auditkit report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
    path = out / "report.html"
    write_text(path, page)
    return path
