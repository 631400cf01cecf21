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


def ssim_vs_margin(results: list[AuditResult]) -> bytes:
    """Per-sample SSIM against normalised margin, one hue per victim (the paper's Figure 4)."""
    import pandas as pd
    import seaborn as sns

    frames = [r.frame.assign(defense=r.name) for r in results if "ssim" in r.frame]
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        frame["outcome"] = np.where(frame["identified"], "identified", "not identified")
        sns.scatterplot(
            data=frame,
            x="normalized_margin",
            y="ssim",
            hue="defense",
            style="outcome",
            style_order=["identified", "not identified"],
            ax=ax,
            s=28,
            alpha=0.8,
        )
        ax.set_xscale("symlog", linthresh=1.0)
    for threshold in sorted({r.ssim_threshold for r in results}):
        ax.axhline(threshold, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("normalised margin  y*Phi(x) / smallest positive margin")
    ax.set_ylabel("SSIM of the best reconstruction")
    ax.set_title("Leakage sits at the margin (Haim et al. 2022, Fig. 4)", fontsize=9)
    figure.tight_layout()
    return _png(figure)
