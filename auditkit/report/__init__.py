"""The report of a run, drawn from its results objects: comparison.csv, figures and report.html."""

from __future__ import annotations

from pathlib import Path

from auditkit.report.html import render
from auditkit.report.plots import (
    leakage_vs_weight_decay,
    loss_curves,
    membership_roc,
    privacy_tradeoff,
    reconstruction_grid,
    ssim_distribution,
    ssim_vs_margin,
)
from auditkit.report.tables import comparison, headline
from auditkit.results.run import RunResult
from auditkit.storage.files import inside, write_bytes, write_text

__all__ = ["REPORT_FILES", "comparison", "headline", "write_report"]

FIGURES = ("ssim_vs_margin", "ssim_distribution", "privacy_tradeoff", "weight_decay")  # beside report.html
REPORT_FILES = ("comparison.csv", "report.html", *(f"{name}.png" for name in FIGURES))  # what write_report writes


def write_report(run: RunResult, out: str | Path, grid_size: int = 24, victim_folders: bool = True) -> Path:
    """Write comparison.csv, VICTIM/reconstructions.png, ssim_vs_margin.png, ssim_distribution.png,
    privacy_tradeoff.png and weight_decay.png (when the victims differ in those) and report.html into ``out``.

    Args:
        run: the results (:func:`auditkit.run_scenario`'s, or :meth:`RunResult.load`'s).
        out: the folder.
        grid_size: the reconstructions each victim's grid shows.
        victim_folders: False when ``out`` is one audit's own folder (its grid goes beside its results).

    Returns:
        The path of report.html.
    """
    out = Path(out)
    write_text(out / "comparison.csv", comparison(run.victims, run.failures).to_csv(index=False))
    figures = {"ssim_vs_margin": ssim_vs_margin(run.victims), "ssim_distribution": ssim_distribution(run.victims)}
    for name, draw in (("privacy_tradeoff", privacy_tradeoff), ("weight_decay", leakage_vs_weight_decay)):
        if (png := draw(run.victims)) is not None:
            figures[name] = png
    for result in run.victims:
        figures[result.name] = reconstruction_grid(result, grid_size)
        if result.evidence["loss_history"].size:  # an attack that iterates (the span attack solves programs)
            figures[f"{result.name}/loss"] = loss_curves(result)
        grid_folder = inside(out, result.name) if victim_folders else out  # a name read from a file stays inside
        write_bytes(grid_folder / "reconstructions.png", figures[result.name])
        if (roc := membership_roc(result)) is not None:
            figures[f"{result.name}/roc"] = roc
            write_bytes(grid_folder / "roc.png", roc)
    for name in FIGURES:
        if name in figures:
            write_bytes(out / f"{name}.png", figures[name])
    path = out / "report.html"
    write_text(path, render(run, figures))
    return path
