"""Figures of a leakage report as PNG bytes (matplotlib, Agg backend: works headless)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from auditkit.metrics import minmax  # noqa: E402
from auditkit.results import AuditResult  # noqa: E402


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=110, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _displayable(image: np.ndarray) -> np.ndarray:
    return np.transpose(image, (1, 2, 0)) if image.ndim == 3 else image


def reconstruction_grid(result: AuditResult, count: int = 24) -> bytes:
    """Best reconstructions (identified first, then by SSIM) under their training images."""
    frame = result.frame
    if "candidate" not in frame or not len(result.candidates):
        order = np.array([], dtype=int)
    else:
        order = frame.sort_values(["identified", "ssim"], ascending=False)["sample"].to_numpy()[:count]
    columns = max(1, min(12, len(order)))
    pairs = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(2 * pairs, columns, figsize=(columns * 1.1, pairs * 2.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for position, sample in enumerate(order):
        row, column = 2 * (position // columns), position % columns
        row_data = frame.loc[frame["sample"] == sample].iloc[0]
        candidate = minmax(result.candidates[int(row_data["candidate"])][None])[0]
        cmap = "gray" if result.train_images[sample].ndim == 2 else None
        axes[row, column].imshow(_displayable(result.train_images[sample]), cmap=cmap, vmin=0, vmax=1)
        axes[row + 1, column].imshow(_displayable(candidate), cmap=cmap, vmin=0, vmax=1)
        mark = "id" if row_data["identified"] else ""
        axes[row + 1, column].set_title(f"{row_data['ssim']:.2f} {mark}", fontsize=7)
    figure.suptitle(
        f"{result.name}: training image (top) / reconstruction (bottom), SSIM; "
        f"identified {int(frame['identified'].sum())}/{len(frame)}",
        fontsize=8,
    )
    figure.tight_layout()
    return _png(figure)


_DECADES = [10.0**k for k in range(0, 7)]
MARGIN_TICKS = sorted({0.0, *(-d for d in _DECADES), *(m * d for d in _DECADES for m in (1, 2, 5))})


def _frames(results: list[AuditResult]):
    import pandas as pd

    frames = [r.frame.assign(victim=r.name) for r in results if "ssim" in r.frame and r.frame["ssim"].notna().any()]
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True)
    frame["outcome"] = np.where(frame["identified"], "identified", "not identified")
    return frame


def _threshold_line(ax, results: list[AuditResult], horizontal: bool = True) -> None:
    for threshold in sorted({r.ssim_threshold for r in results}):
        line = ax.axhline if horizontal else ax.axvline
        line(threshold, color="grey", lw=0.9, ls="--", label=f"SSIM threshold {threshold:g}")


def _finished(figure: plt.Figure, ax) -> bytes:
    """The legend outside the axes (it never covers a point), then the PNG."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    return _png(figure)


def ssim_vs_margin(results: list[AuditResult]) -> bytes:
    """Per-sample SSIM against normalised margin, one hue per victim (the paper's Figure 4)."""
    import seaborn as sns
    from matplotlib.ticker import FixedLocator, FuncFormatter

    frame = _frames(results)
    figure, ax = plt.subplots(figsize=(9.0, 4.2))
    if frame is not None:
        sns.scatterplot(
            data=frame,
            x="normalized_margin",
            y="ssim",
            hue="victim",
            style="outcome",
            style_order=["identified", "not identified"],
            ax=ax,
            s=26,
            alpha=0.8,
        )
        margins = frame["normalized_margin"].to_numpy(dtype=float)
        margins = margins[np.isfinite(margins)]
        if len(margins) and (margins.min() <= 0 or margins.max() > 20 * margins.min()):
            ax.set_xscale("symlog", linthresh=1.0)  # margins span decades; misfitted samples are negative
            ax.xaxis.set_major_locator(FixedLocator([t for t in MARGIN_TICKS if margins.min() <= t <= margins.max()]))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    _threshold_line(ax, results)
    ax.set_xlabel("normalised margin  y*Phi(x) / smallest positive margin (1 = on the margin)")
    ax.set_ylabel("SSIM of the best reconstruction")
    ax.set_title("Leakage sits at the margin (Haim et al. 2022, Fig. 4)", fontsize=10)
    return _finished(figure, ax)


def ssim_distribution(results: list[AuditResult]) -> bytes:
    """The best SSIM of every training sample, per victim, identified samples marked."""
    import seaborn as sns

    frame = _frames(results)
    figure, ax = plt.subplots(figsize=(9.0, 0.6 + 0.55 * max(1, len(results))))
    if frame is not None:
        sns.boxplot(data=frame, x="ssim", y="victim", color="#e8e8e8", fliersize=0, ax=ax, width=0.6)
        state = np.random.get_state()  # seaborn jitters with the global generator: fix it, so a
        np.random.seed(0)  # re-rendered report is byte-identical, and leave the caller's state alone
        try:
            sns.stripplot(
                data=frame, x="ssim", y="victim", hue="outcome", hue_order=["identified", "not identified"],
                palette={"identified": "#c0392b", "not identified": "#7f8c8d"}, size=3.5, alpha=0.8, ax=ax,
            )  # fmt: skip
        finally:
            np.random.set_state(state)
    _threshold_line(ax, results, horizontal=False)
    ax.set_xlim(-0.05, 1.0)
    ax.set_xlabel("SSIM of each training sample's best reconstruction")
    ax.set_ylabel("")
    ax.set_title("How well each training sample was reconstructed", fontsize=10)
    return _finished(figure, ax)


def loss_curves(result: AuditResult) -> bytes:
    """The attack's loss per restart over its steps (log scale): which restarts converged, which stalled."""
    import pandas as pd
    import seaborn as sns

    history, steps = result.evidence["loss_history"], result.evidence["history_steps"]
    figure, ax = plt.subplots(figsize=(6.0, 3.0))
    if history.size:
        frame = pd.DataFrame(history, columns=[f"restart {r}" for r in range(history.shape[1])]).assign(step=steps)
        long = frame.melt(id_vars="step", var_name="restart", value_name="loss").dropna()
        long = long[long["loss"] > 0]
        sns.lineplot(data=long, x="step", y="loss", hue="restart", ax=ax, lw=1.0)
        ax.set_yscale("log")
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel("attack step")
    ax.set_ylabel("attack loss")
    ax.set_title(f"{result.name}: attack loss per restart", fontsize=9)
    figure.tight_layout()
    return _png(figure)
