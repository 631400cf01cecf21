"""Figures of a leakage report as PNG bytes (matplotlib, Agg backend: works headless)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from auditkit.report.tables import epsilon_of, undefended  # noqa: E402
from auditkit.results.audit import AuditResult
from auditkit.scoring.metrics import minmax  # noqa: E402
from auditkit.scoring.roc import DistanceROC, roc_curve  # noqa: E402


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=110, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _displayable(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) as matplotlib shows it: (H, W) for one channel, (H, W, 3) for RGB."""
    if image.ndim == 3 and len(image) == 1:
        return image[0]
    return np.transpose(image, (1, 2, 0)) if image.ndim == 3 else image


def thumbnail(image: np.ndarray) -> bytes:
    """One image in [0, 1] ((H, W) grey or (C, H, W) colour) as a small PNG at its own resolution."""
    buffer = io.BytesIO()
    plt.imsave(buffer, np.clip(_displayable(image), 0, 1), cmap="gray", vmin=0, vmax=1, format="png")
    return buffer.getvalue()


def reconstruction_grid(result: AuditResult, count: int = 24) -> bytes:
    """Best reconstructions (identified first, then by score) under their training images; for embeddings, the
    images behind them over their nearest non-member's image, when the images were given."""
    frame, metric = result.frame, result.compared_by
    if "candidate" not in frame or not len(result.candidates):
        order = np.array([], dtype=int)
    else:
        order = frame.sort_values(["identified", metric], ascending=False)["sample"].to_numpy()[:count]
    upper, lower = _grid_images(result)
    columns = max(1, min(12, len(order)))
    pairs = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(2 * pairs, columns, figsize=(columns * 1.1, pairs * 2.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for position, sample in enumerate(order if upper is not None else []):
        row, column = 2 * (position // columns), position % columns
        row_data = frame.loc[frame["sample"] == sample].iloc[0]
        shown = (upper(sample, row_data), lower(sample, row_data) if lower else None)
        for offset, image in enumerate(shown):
            if image is not None:
                cmap = "gray" if _displayable(image).ndim == 2 else None
                axes[row + offset, column].imshow(_displayable(image), cmap=cmap, vmin=0, vmax=1)
        mark = "id" if row_data["identified"] else ""
        axes[row + 1, column].set_title(f"{row_data[metric]:.2f} {mark}", fontsize=7)
    what = (
        "training image (top) / reconstruction (bottom), SSIM"
        if metric == "ssim"
        else "image behind the embedding (top) / its nearest non-member's (bottom), cosine"
        if upper is not None
        else "embeddings without images: nothing to draw"
    )
    figure.suptitle(
        f"{result.name}: {what}; identified {int(frame['identified'].sum())}/{len(frame)}",
        fontsize=8,
    )
    figure.tight_layout()
    return _png(figure)


def _grid_images(result: AuditResult):
    """The grid's two pictures per sample as functions (sample, its frame row) -> image in [0, 1]: the training
    image and its reconstruction, or for embeddings the images given behind them (None: nothing to draw)."""
    if result.compared_by == "ssim":
        return (
            lambda sample, row: result.train_images[sample],
            lambda sample, row: minmax(result.candidates[int(row["candidate"])][None])[0],
        )
    members, controls = result.evidence.get("train_display"), result.evidence.get("control_display")
    if members is None:
        return None, None
    lower = (lambda sample, row: controls[sample]) if controls is not None else None
    return (lambda sample, row: members[sample]), lower


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


def membership_roc(result: AuditResult) -> bytes | None:
    """The ROC curve of the attack's membership distance, members against non-members, on log axes (where the
    low false-positive rates that matter show); None for an attack without one."""
    members, nonmembers = result.distances()
    if not len(members) or not len(nonmembers):
        return None
    fpr, tpr = roc_curve(members, nonmembers)
    roc = DistanceROC.of(members, nonmembers)
    floor = 1.0 / (2 * len(nonmembers))
    figure, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.step(np.maximum(fpr, floor), np.maximum(tpr, floor), where="post", lw=1.4, label=f"AUC {roc.auc:.3f}")
    ax.plot([floor, 1], [floor, 1], ls=":", color="grey", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false-positive rate (non-members)")
    ax.set_ylabel("true-positive rate (members)")
    ax.set_title(f"{result.name}: membership by {result.attack.DISTANCE.replace('_', ' ')}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return _png(figure)


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


def privacy_tradeoff(results: list[AuditResult]) -> bytes | None:
    """Leakage and test accuracy against epsilon, one point per DP-SGD victim (None with fewer than two):
    identified fraction with the DP ceiling as a curve and the undefended level as a line (top), test
    accuracy on the same axis (bottom). No noise (epsilon infinite) sits at the right edge. Markers: filled
    for a conclusive verdict, pale for a count above chance whose premise is not met (a lower bound), hollow
    where the attack could not speak (no evidence either way). The ceiling is drawn per victim, not joined:
    between two epsilons it is not known."""
    dp = sorted((r for r in results if r.privacy is not None), key=epsilon_of)
    if len(dp) < 2:
        return None
    epsilons = np.array([epsilon_of(r) for r in dp])
    finite = epsilons[np.isfinite(epsilons)]
    edge = (finite.max() if len(finite) else 1.0) * 30
    x = np.where(np.isfinite(epsilons), epsilons, edge)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9.0, 6.0), sharex=True)
    summaries = [r.summary() for r in dp]
    leaked = np.array([s.identified_fraction for s in summaries])
    top.plot(x, leaked, color="#c0392b", lw=1.2, label="identified (measured)")
    conclusive = np.array([s.verdict == "conclusive" for s in summaries])
    above_chance = np.array([r.membership().significant for r in dp]) & ~conclusive
    silent = ~conclusive & ~above_chance
    for chosen, style, label in (
        (conclusive, {"color": "#c0392b"}, "conclusive"),
        (above_chance, {"color": "#e6a39b", "edgecolors": "#c0392b"}, "above chance, premise not met: a lower bound"),
        (silent, {"facecolors": "white", "edgecolors": "#c0392b"}, "not conclusive: no evidence either way"),
    ):
        if chosen.any():
            top.scatter(x[chosen], leaked[chosen], zorder=3, label=label, **style)
    bounded = [(xi, r.bounds.identified.bound) for xi, r in zip(x, dp, strict=True) if r.bounds]
    if bounded:
        top.plot(*zip(*bounded, strict=True), color="#34495e", ls="none", marker="_", markersize=22, mew=2,
                 label="DP ceiling (any attack)")  # fmt: skip
    tested = np.array([r.victim.training.test_accuracy if r.victim else math.nan for r in dp])
    bottom.plot(x, tested, color="#2471a3", marker="o", lw=1.2, label="DP-SGD victims")
    for index, result in enumerate(undefended(results)):
        style = {"color": "#7f8c8d", "lw": 0.9, "ls": ":" if index else "-"}
        top.axhline(result.summary().identified_fraction, label=f"{result.name} (no DP)", **style)
        if result.victim and np.isfinite(result.victim.training.test_accuracy):
            bottom.axhline(result.victim.training.test_accuracy, label=f"{result.name} (no DP)", **style)
    top.set_xscale("log")
    ticks = [t for t in (0.1, 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e8, 1e10) if x.min() / 3 <= t < edge / 3]
    bottom.set_xticks([*ticks, edge] if not np.isfinite(epsilons).all() else ticks)
    bottom.set_xticklabels([f"{t:g}" for t in ticks] + ([] if np.isfinite(epsilons).all() else ["no noise"]))
    top.set_ylim(-0.03, 1.03)
    top.set_ylabel("fraction identified")
    bottom.set_ylabel("test accuracy")
    bottom.set_xlabel("epsilon (DP-SGD, at each victim's delta)")
    top.set_title("Leakage and utility against epsilon", fontsize=10)
    for ax in (top, bottom):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    return _png(figure)


def leakage_vs_weight_decay(results: list[AuditResult]) -> bytes | None:
    """Identified fraction and KKT residual against the training weight decay, for victims trained
    without DP that differ in it (None with fewer than three weight decays); lines through the mean
    at each weight decay (several seeds), a point per victim."""
    import pandas as pd

    rows = [
        {"decay": r.victim.training.recipe["weight_decay"], "identified": s.identified_fraction,
         "residual": s.metric("victim_kkt_residual")}
        for r, s in ((r, r.summary()) for r in results)
        if r.victim and r.privacy is None and r.victim.training.recipe.get("weight_decay") is not None
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty or frame["decay"].nunique() < 3:
        return None
    positive = frame.loc[frame["decay"] > 0, "decay"]
    frame["x"] = frame["decay"].where(frame["decay"] > 0, positive.min() / 10 if len(positive) else 1e-4)
    means = frame.groupby("x", sort=True).mean(numeric_only=True)
    figure, ax = plt.subplots(figsize=(9.0, 3.6))
    for column, colour, marker, label in (
        ("identified", "#c0392b", "o", "fraction identified"),
        ("residual", "#7f8c8d", "s", "victim KKT residual (premise: <= 0.3)"),
    ):
        ax.plot(means.index, means[column], color=colour, lw=1.2, label=label)
        ax.scatter(frame["x"], frame[column], color=colour, marker=marker, s=22, zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(means.index)
    ax.set_xticklabels([f"{d:g}" for d in means["decay"]])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training weight decay")
    ax.set_title("Leakage against weight decay (same data, architecture and budget)", fontsize=10)
    return _finished(figure, ax)
