"""report.html: one self-contained page rendered from a Jinja2 template (figures embedded, CSS inline).

The page answers first (a finding per victim in plain words), then shows the evidence (reconstructions
beside their training images, members against non-members, figures), then the details; every term is
explained where it first appears (a tooltip) and in the glossary at the end.
"""

from __future__ import annotations

import base64
import json
import math

import jinja2
import pandas as pd

from auditkit.report.plots import thumbnail
from auditkit.report.tables import privacy_sentences
from auditkit.results.audit import AuditResult
from auditkit.results.run import RunResult
from auditkit.scoring.metrics import EMBEDDINGS, minmax

GLOSSARY = {
    "identified": "the reconstruction matched to a training sample is closer (normalised cross-correlation) to that "
    "sample than to any other training sample or held-out non-member: the headline count; it reads 0 when nothing "
    "leaked",
    "non-members": "images of the same distribution the model never trained on, given the members' treatment: a "
    "candidate nearest to one of them 'identifies' it, a false positive",
    "p": "one-sided Fisher exact test: are members identified more often than non-members? Small = the model leaks",
    "epsilon lower bound": "the privacy loss this one training run proves at 95 % confidence (Steinke, Nasr and "
    "Jagielski's one-run test on members paired with random non-members of their class): a DP guarantee with a "
    "smaller epsilon would be contradicted; 0 proves nothing, and data passed in by a user gets 0 (its draw is "
    "unknown)",
    "verdict": "the premise check, of the model and of the attack, as the attack states it; for the KKT attack: "
    "conclusive: the model sits near a KKT point "
    "(residual <= 0.3), fits its training set, the attack converged (its residual no larger than the model's) and, "
    "when nothing was identified beyond chance, the start control found the weights do not hold the training set "
    "where the search missed it, so the count means what it says (for this attack; never a guarantee against "
    "others); weak: residual 0.3-0.7, uncentred inputs or an attack not fully "
    "converged, counts under-state the leakage; inconclusive: residual > 0.7, training errors or an attack far from "
    "converged, a low count says nothing; not applicable: the attack cannot read this model at all (no evidence "
    "either way)",
    "confirmed": "a training sample whose membership distance (the span attack: its span residual) is below half of "
    "every public input's: the attacker's own threshold, set without the training set",
    "ROC AUC": "the chance that a random non-member's membership distance exceeds a random member's (1: every "
    "member told apart, 0.5: chance); TPR at 0.1 % FPR is the fraction of members below the threshold that at most "
    "0.1 % of the non-members fall below",
    "cosine": "cosine similarity of an embedding and its best candidate (feature data: samples are a backbone's "
    "embeddings, compared in the embedding space; 1 is the same direction)",
    "SSIM": "structural similarity of a reconstruction and its training image (3x3 window, the paper's protocol); "
    "the training mean image alone passes 0.4 for about half of MNIST, so it is shown beside that baseline",
    "DP ceiling": "for a DP-SGD victim, the most any reconstruction attack can achieve given the noise "
    "(Hayes, Mahloujifar, Balle 2023), beside the measured fraction; vacuous when it reaches 1",
    "normalised margin": "y * Phi(x) divided by the smallest positive margin: 1 is on the margin, where the KKT "
    "multipliers live and reconstructions succeed",
}
LEAKED_SHOWN = 12  # identified samples listed with thumbnails on the first screen
# conclusive is no colour of safety: it says the count can be read, and a conclusive count may be a large leak
VERDICT_COLOURS = {"conclusive": "#1f4e79", "weak": "#b26a00", "inconclusive": "#b71c1c", "not applicable": "#616161"}


def _data_uri(png: bytes | None) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else ""


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _cell(value, missing: str, digits: int = 3) -> dict:
    """A table cell: the value, or "n/a" with the reason as its tooltip."""
    text = _number(value, digits)
    return {"text": text, "title": ""} if text else {"text": "n/a", "title": missing}


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="", border=0, classes="t")


def _leaked(result: AuditResult) -> list[dict]:
    """The identified samples, best match first (at most LEAKED_SHOWN): the user's index, two thumbnails (the
    training image and its reconstruction; for embeddings, the image behind the embedding and its nearest
    non-member's, when the images were given), the score (SSIM or cosine) and normalised margin."""
    frame, metric = result.frame, result.compared_by
    found = frame.loc[frame["identified"]].sort_values(metric, ascending=False).head(LEAKED_SHOWN)
    index = found["source_index"] if "source_index" in found else found["sample"]
    return [
        {
            "index": int(source),
            **_thumbnails(result, int(row["sample"]), int(row["candidate"])),
            "score": _number(float(row[metric]), 2),
            "margin": _number(float(row["normalized_margin"]), 3),
        }
        for source, (_, row) in zip(index, found.iterrows())
    ]


def _thumbnails(result: AuditResult, sample: int, candidate: int) -> dict[str, str]:
    """The two pictures of one identified sample as data URIs ('' where there is none to show)."""
    if result.compared_by == "ssim":
        reconstruction = minmax(result.candidates[candidate][None])[0]
        train = result.train_images[sample]
        return {"train": _data_uri(thumbnail(train)), "second": _data_uri(thumbnail(reconstruction))}
    shown = {}
    for key, array in (("train", "train_display"), ("second", "control_display")):
        images = result.evidence.get(array)
        shown[key] = _data_uri(thumbnail(images[sample])) if images is not None else ""
    return shown


SHOWN = {  # the leaked table's rows: the two pictures and the score, by how samples are compared
    "ssim": {"first": "training image", "second": "reconstruction", "score": "SSIM"},
    "cosine": {"first": "image behind the embedding", "second": "nearest non-member's image", "score": "cosine"},
}


def _victim(result: AuditResult, figures: dict[str, bytes]) -> dict:
    summary = result.summary()
    training = result.victim.training if result.victim else None
    privacy = result.privacy
    bounds = result.bounds
    not_dp = "not trained with DP-SGD"
    exposed = result.frame.sort_values(["identified", result.compared_by], ascending=False).head(20)
    per_class = result.per_class()
    return {
        "name": result.name,
        "summary": summary,
        "colour": VERDICT_COLOURS[summary.verdict],
        "reasons": result.verdict().reasons,
        "test_accuracy": _cell(training.test_accuracy if training else None, "no test set (trained elsewhere)"),
        "train_accuracy": _cell(summary.train_accuracy, "no training set"),
        "epsilon": _cell(privacy.epsilon if privacy else None, not_dp),
        "ceiling": _cell(bounds.identified.bound if bounds else None, not_dp),
        "p_value": _cell(summary.p_value, "no non-members to test against", 2),
        "epsilon_lower": _cell(summary.epsilon_lower, "no non-members to test against", 2),
        "premise": [
            {"term": term, "cell": _cell(value, missing), "note": note}
            for term, value, missing, note in result.attack.premise_cells()
        ],
        "leaked": _leaked(result),
        "shown": SHOWN[result.compared_by],
        "compared": EMBEDDINGS.description if result.compared_by == EMBEDDINGS.name else "",
        "grid": _data_uri(figures.get(result.name)),
        "loss": _data_uri(figures.get(f"{result.name}/loss")),
        "roc": _data_uri(figures.get(f"{result.name}/roc")),
        "bounds": bounds,
        "attack": result.attack,
        "attack_words": result.attack.describe(),
        "attack_table": _table(table) if (table := result.attack.table()) is not None else "",
        "exposed": _table(exposed),
        "per_class": _table(per_class),
        "classes": len(per_class),
        "notes": result.data_notes,
        "recipe": json.dumps(training.recipe, default=str) if training and training.recipe else "",
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("auditkit.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in the template is an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(run: RunResult, figures: dict[str, bytes]) -> str:
    """The page for ``run``; ``figures``: "ssim_vs_margin", "ssim_distribution", optionally
    "privacy_tradeoff" and "weight_decay", and per victim its reconstruction grid (its name) and loss
    curves ("NAME/loss")."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            facts=run.facts,
            config=json.dumps(run.facts.config, indent=1, default=str),
            victims=[_victim(result, figures) for result in run.victims],
            failures=run.failures,
            ssim_vs_margin=_data_uri(figures.get("ssim_vs_margin")),
            privacy_tradeoff=_data_uri(figures.get("privacy_tradeoff")),
            weight_decay=_data_uri(figures.get("weight_decay")),
            privacy_sentences=privacy_sentences(run.victims),
            ssim_distribution=_data_uri(figures.get("ssim_distribution")),
            glossary={**GLOSSARY, **{k: v for r in run.victims for k, v in r.attack.GLOSSARY.items()}},
        )
    )
