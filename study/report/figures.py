"""Figures of the report stage (PNG for the README, SVG for papers), written reproducibly (no
timestamps, fixed SVG ids): the conflict share over training, the conflict share against the
fusion weight, fusion-weight maps like the paper's Fig. 3/4, and the speed-accuracy figure
(Fig. 1)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study.report.analysis import BUCKET_ORDER, checkpoint_order  # noqa: E402
from study.utils import atomic_path  # noqa: E402

plt.rcParams["svg.hashsalt"] = "asff-study"
LEVEL_NAMES = ("stride 32", "stride 16", "stride 8")
WEIGHT_NAMES = ("alpha (from stride 32)", "beta (from stride 16)", "gamma (from stride 8)")


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    """``<name>.png`` and ``<name>.svg``, atomically and without timestamps."""
    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = Path(out_dir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight", metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


def conflict_share_figure(
    gradients: pd.DataFrame, fusions: Sequence[str], out_dir: Path, caption: str
) -> list[Path]:
    """Conflict share (mean over locations; points: seeds, line: their mean) at each checkpoint,
    per fusion; columns: all sizes, small, medium, large; rows: full and detached gradient."""
    order = checkpoint_order(gradients)
    modes = ("full", "detached")
    fig, axes = plt.subplots(
        len(modes),
        len(BUCKET_ORDER),
        figsize=(3.2 * len(BUCKET_ORDER), 3.0 * len(modes)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    palette = dict(zip(fusions, sns.color_palette("tab10", len(fusions)), strict=True))
    x_of = {c: i for i, c in enumerate(order)}
    for r, mode in enumerate(modes):
        for c, bucket in enumerate(BUCKET_ORDER):
            ax = axes[r][c]
            g = gradients[(gradients["mode"] == mode) & (gradients["bucket"] == bucket)]
            for i, fusion in enumerate(fusions):
                f = g[g["fusion"] == fusion]
                if f.empty:
                    continue
                xs = f["checkpoint"].map(x_of) + (i - len(fusions) / 2) * 0.04
                ax.scatter(xs, f["share_mean"], s=10, color=palette[fusion], alpha=0.6)
                mean = f.groupby("checkpoint")["share_mean"].mean().reindex(order)
                ax.plot(range(len(order)), mean.to_numpy(), color=palette[fusion], label=fusion)
            ax.set_title(f"{bucket}, {mode} gradient", fontsize=9)
            ax.set_xticks(range(len(order)), order)
            ax.set_xlim(-0.5, len(order) - 0.5)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("conflict share")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="fusion")
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    return save(fig, out_dir, "conflict_share")


def share_vs_weight_figure(
    bins: pd.DataFrame, fusions: Sequence[str], out_dir: Path, caption: str
) -> list[Path] | None:
    """Final weights: conflict share against the weight the other levels give to the location's
    level (bins of 0.1; points per seed, line pooled), for fusions with weights."""
    b = bins[bins["fusion"].isin(fusions)] if not bins.empty else bins
    if b.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), sharey=True)
    palette = dict(zip(fusions, sns.color_palette("tab10", len(fusions)), strict=True))
    for ax, mode in zip(axes, ("full", "detached"), strict=True):
        m = b[b["mode"] == mode]
        for fusion in fusions:
            f = m[m["fusion"] == fusion]
            if f.empty:
                continue
            f = f.astype({"w_low": float, "w_high": float, "locations": float})
            centre = (f["w_low"] + f["w_high"]) / 2
            ax.scatter(
                centre,
                f["share_mean"],
                s=8 + 30 * f["locations"] / f["locations"].max(),
                color=palette[fusion],
                alpha=0.5,
            )
            pooled = f.assign(w=centre, s=f["share_mean"] * f["locations"]).groupby("w")
            line = pooled["s"].sum() / pooled["locations"].sum()
            ax.plot(line.index, line.to_numpy(), color=palette[fusion], label=fusion)
        ax.set_xlabel("weight the other levels give to this level (w_others)")
        ax.set_title(f"{mode} gradient", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("conflict share")
    axes[-1].legend(fontsize=8)
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "share_vs_weight")


def weight_maps_figure(
    maps_path: Path, name: str, out_dir: Path, caption: str, class_names: Sequence[str] = ()
) -> list[Path] | None:
    """Like the paper's Fig. 3/4: per image and output level, the image with its boxes, the
    alpha/beta/gamma maps (0..1) and the fused map's mean activation."""
    with np.load(maps_path) as data:
        arrays = {k: data[k] for k in data.files}
    images = sorted(int(k[5:]) for k in arrays if k.startswith("image") and k[5:].isdigit())
    if not images or f"weights{images[0]}_level0" not in arrays:
        return None
    rows = [(n, k) for n in images for k in range(3)]
    cols = 5
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.0 * cols, 2.0 * len(rows)), squeeze=False)
    for r, (n, k) in enumerate(rows):
        ax = axes[r][0]
        if k == 0:
            ax.imshow(arrays[f"image{n}"])
            for box, label in zip(arrays[f"boxes{n}"], arrays[f"labels{n}"], strict=True):
                x0, y0, x1, y1 = box
                ax.add_patch(
                    plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1, color="yellow")
                )
                if len(class_names) > int(label):
                    ax.text(
                        x0, y0, class_names[int(label)], fontsize=5, color="yellow", va="bottom"
                    )
            ax.set_title(f"image {int(arrays[f'image_id{n}'])}", fontsize=7)
        else:
            ax.axis("off")
        ax.set_xticks([])
        ax.set_yticks([])
        w = arrays[f"weights{n}_level{k}"]
        for i in range(3):
            ax = axes[r][1 + i]
            ax.imshow(w[i], vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if r < 3:
                ax.set_title(WEIGHT_NAMES[i], fontsize=7)
            if i == 0:
                ax.set_ylabel(f"output {LEVEL_NAMES[k]}", fontsize=7)
        ax = axes[r][4]
        ax.imshow(arrays[f"activation{n}_level{k}"], cmap="magma")
        ax.set_xticks([])
        ax.set_yticks([])
        if r < 3:
            ax.set_title("fused map, mean activation", fontsize=7)
    fig.suptitle(caption, fontsize=9, y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    return save(fig, out_dir, name)


def speed_accuracy_figure(summary: pd.DataFrame, out_dir: Path, caption: str) -> list[Path]:
    """AP (x 100, mean over seeds, bars: std) against ms per image at each test size, one line
    per model, each point labelled by its size (the paper's Fig. 1)."""
    data = summary.dropna(subset=["ms"])
    models = list(dict.fromkeys(data["experiment"]))
    palette = dict(zip(models, sns.color_palette("tab10", len(models)), strict=True))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for model in models:
        m = data[data["experiment"] == model].sort_values("size")
        ap, std = 100 * m["AP"].to_numpy(), 100 * m["AP_std"].fillna(0).to_numpy()
        ax.errorbar(
            m["ms"],
            ap,
            yerr=std,
            marker="o",
            ms=4,
            capsize=2,
            lw=1.2,
            color=palette[model],
            label=model,
        )
        for x, y, size in zip(m["ms"], ap, m["size"], strict=True):
            ax.annotate(
                str(int(size)),
                (x, y),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color=palette[model],
            )
    ax.set_xlabel("ms per image (median, batch 1)")
    ax.set_ylabel("COCO AP x 100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(textwrap.fill(caption, 100), fontsize=8)
    fig.tight_layout()
    return save(fig, out_dir, "speed_accuracy")


def learning_curves_figure(
    curves: pd.DataFrame, names: dict[str, str], out_dir: Path
) -> list[Path]:
    """AP on the learning-curve subset against iterations, one line per strategy (mean over
    seeds, the seeds' range shaded)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for exp, runs in curves.groupby("experiment", sort=False):
        by = runs.groupby("iteration")["AP"]
        x = by.mean().index.to_numpy()
        ax.plot(x, 100 * by.mean().to_numpy(), marker="o", ms=3, label=names.get(exp, exp))
        ax.fill_between(x, 100 * by.min().to_numpy(), 100 * by.max().to_numpy(), alpha=0.15)
    ax.set_xlabel("training iterations")
    ax.set_ylabel("AP (learning-curve subset)")
    ax.set_title("Learning curves (mean over seeds; band: min..max)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, out_dir, "learning_curves")


def budget_figure(budget: pd.DataFrame, names: dict[str, str], out_dir: Path) -> list[Path]:
    """The budget curve: ΔAP against iterations per comparison with its 95 % seed t interval;
    left: each strategy − none, right: asff − each other strategy."""
    panels = [
        ("each strategy − none", budget[budget["reference"] == "fusion/none"]),
        (
            "asff − each other strategy",
            budget[
                (budget["experiment"] == "fusion/asff") & (budget["reference"] != "fusion/none")
            ],
        ),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (title, rows) in zip(axes, panels, strict=True):
        for (exp, ref), group in rows.groupby(["experiment", "reference"], sort=False):
            g = group.sort_values("iteration")
            label = f"{names.get(exp, exp)} − {names.get(ref, ref)}"
            ax.plot(g["iteration"], g["delta"], marker="o", ms=3, label=label)
            ax.fill_between(g["iteration"], g["lo"], g["hi"], alpha=0.12)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("training iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("ΔAP, points (band: 95 % t interval over seeds)")
    return save(fig, out_dir, "budget_curve")
