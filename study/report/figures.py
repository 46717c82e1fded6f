"""Figures of the report stage (PNG for the README, SVG for papers), written reproducibly (no
timestamps, fixed SVG ids): the gradient measures over training and against the fusion weight
(per level), fusion-weight maps like the paper's Fig. 3/4, the speed-accuracy figure (Fig. 1),
learning and budget curves."""

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

from study.report.analysis import LEVEL_NAMES, checkpoint_order  # noqa: E402
from study.utils import atomic_path  # noqa: E402

plt.rcParams["svg.hashsalt"] = "asff-study"
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


# The measures the gradient figures draw (columns of the analysis's gradients.csv)
GRADIENT_PANELS = (
    ("cross_norm_mean", "|cross-level gradient| / loss", True),
    ("own_norm_mean", "|own-level gradient| / loss", True),
    ("negative_cosine", "share with cosine < 0", False),
    ("share_mean", "conflict share", False),
)


def _measure_axis(ax, log: bool) -> None:  # noqa: ANN001
    """A norm on a log scale, a share or fraction on 0..1."""
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(-0.02, 1.02)


def _seed_points_and_mean(ax, x, values, colour, label, jitter: float = 0.0) -> None:  # noqa: ANN001
    """Seeds as points, their mean as a line (non-positive values dropped on a log axis)."""
    frame = pd.DataFrame({"x": x, "v": values}).dropna()
    if ax.get_yscale() == "log":
        frame = frame[frame["v"] > 0]
    if frame.empty:
        return
    ax.scatter(frame["x"] + jitter, frame["v"], s=9, color=colour, alpha=0.55)
    mean = frame.groupby("x")["v"].mean()
    ax.plot(mean.index, mean.to_numpy(), color=colour, label=label)


def gradient_measures_figure(
    gradients: pd.DataFrame, fusions: Sequence[str], out_dir: Path, caption: str
) -> list[Path]:
    """Rows: the measures of ``GRADIENT_PANELS`` (full gradient, all sizes); columns: the three
    levels, never pooled; x: the checkpoints (the same locations at each). Points: seeds,
    lines: their mean."""
    order = checkpoint_order(gradients)
    x_of = {c: i for i, c in enumerate(order)}
    g = gradients[(gradients["mode"] == "full") & (gradients["bucket"] == "all")]
    fig, axes = plt.subplots(
        len(GRADIENT_PANELS),
        len(LEVEL_NAMES),
        figsize=(3.3 * len(LEVEL_NAMES), 2.5 * len(GRADIENT_PANELS)),
        sharex=True,
        squeeze=False,
    )
    palette = dict(zip(fusions, sns.color_palette("tab10", len(fusions)), strict=True))
    for r, (column, label, log) in enumerate(GRADIENT_PANELS):
        for c, level_name in enumerate(LEVEL_NAMES):
            ax = axes[r][c]
            _measure_axis(ax, log)
            for i, fusion in enumerate(fusions):
                f = g[(g["fusion"] == fusion) & (g["level"] == c)]
                jitter = (i - len(fusions) / 2) * 0.04
                xs = f["checkpoint"].map(x_of).to_numpy(dtype=float)
                _seed_points_and_mean(ax, xs, f[column].to_numpy(), palette[fusion], fusion, jitter)
            if r == 0:
                ax.set_title(level_name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            ax.set_xticks(range(len(order)), order)
            ax.set_xlim(-0.5, len(order) - 0.5)
            ax.grid(alpha=0.3)
    legend: dict[str, object] = {}  # every strategy once (none draws no cross-level panel)
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    ordered = [f for f in fusions if f in legend]
    fig.legend(
        [legend[f] for f in ordered], ordered, loc="center right", fontsize=8, title="fusion"
    )
    fig.suptitle(textwrap.fill(caption, 130), fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    return save(fig, out_dir, "gradient_measures")


def measures_vs_weight_figure(
    bins: pd.DataFrame, fusions: Sequence[str], out_dir: Path, caption: str
) -> list[Path] | None:
    """Final weights, full gradient: the cross-level norm and the conflict share against the
    weight the other levels give to the location's level (bins of 0.1), one column per level
    (a bin pooled over levels would mostly say which level fills it). Points: seeds (size:
    locations), lines: the seeds' locations pooled."""
    b = bins[bins["fusion"].isin(fusions) & (bins["mode"] == "full")] if not bins.empty else bins
    if b.empty:
        return None
    panels = (("cross_norm_mean", "|cross-level gradient| / loss", True), GRADIENT_PANELS[3])
    fig, axes = plt.subplots(
        len(panels), len(LEVEL_NAMES), figsize=(10, 5.6), sharex=True, squeeze=False
    )
    palette = dict(zip(fusions, sns.color_palette("tab10", len(fusions)), strict=True))
    b = b.astype({"w_low": float, "w_high": float, "locations": float})
    for r, (column, label, log) in enumerate(panels):
        for c, level_name in enumerate(LEVEL_NAMES):
            ax = axes[r][c]
            _measure_axis(ax, log)
            for fusion in fusions:
                f = b[(b["fusion"] == fusion) & (b["level"] == c)].dropna(subset=[column])
                if log:
                    f = f[f[column] > 0]
                if f.empty:
                    continue
                centre = (f["w_low"] + f["w_high"]) / 2
                size = 8 + 30 * f["locations"] / f["locations"].max()
                ax.scatter(centre, f[column], s=size, color=palette[fusion], alpha=0.5)
                pooled = f.assign(w=centre, s=f[column] * f["locations"]).groupby("w")
                line = pooled["s"].sum() / pooled["locations"].sum()
                ax.plot(line.index, line.to_numpy(), color=palette[fusion], label=fusion)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(level_name, fontsize=9)
            if r == len(panels) - 1:
                ax.set_xlabel("w_others: weight the other levels give this level", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="fusion")
    fig.suptitle(textwrap.fill(caption, 120), fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 0.96))
    return save(fig, out_dir, "measures_vs_weight")


def weight_maps_figure(
    maps_path: Path, name: str, out_dir: Path, caption: str, class_names: Sequence[str] = ()
) -> list[Path] | None:
    """Like the paper's Fig. 3/4: per image and output level, the image with its boxes, the
    alpha/beta/gamma maps (one colour scale, 0..1, with its bar) and the fused map's mean
    activation (one scale per output level across the images, with its bar)."""
    with np.load(maps_path) as data:
        arrays = {k: data[k] for k in data.files}
    images = sorted(int(k[5:]) for k in arrays if k.startswith("image") and k[5:].isdigit())
    if not images or f"weights{images[0]}_level0" not in arrays:
        return None
    rows = [(n, k) for n in images for k in range(3)]
    cols = 5
    # the activations' scale per output level, shared by the images (their values compare)
    activation_scale = []
    for k in range(3):
        values = np.concatenate([arrays[f"activation{n}_level{k}"].ravel() for n in images])
        activation_scale.append((float(values.min()), float(values.max())))
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
            weight_image = ax.imshow(w[i], vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if r < 3:
                ax.set_title(WEIGHT_NAMES[i], fontsize=7)
            if i == 0:
                ax.set_ylabel(f"output {LEVEL_NAMES[k]}", fontsize=7)
        ax = axes[r][4]
        activation = arrays[f"activation{n}_level{k}"]
        low, high = activation_scale[k]
        act_image = ax.imshow(activation, cmap="magma", vmin=low, vmax=high)
        ax.set_xticks([])
        ax.set_yticks([])
        if r < 3:
            ax.set_title("fused map, mean activation", fontsize=7)
        if n == images[-1]:  # one scale per output level, its colour bar under its last row
            bar = fig.colorbar(act_image, ax=ax, orientation="horizontal", fraction=0.08, pad=0.04)
            bar.ax.tick_params(labelsize=5)
            bar.set_label(f"activation, output {LEVEL_NAMES[k]}", fontsize=5)
    fig.suptitle(caption, fontsize=9, y=1.0)
    fig.tight_layout(rect=(0, 0, 0.95, 0.99))
    cax = fig.add_axes((0.955, 0.3, 0.012, 0.4))
    bar = fig.colorbar(weight_image, cax=cax)
    bar.set_label("fusion weight (one scale, 0..1, for every weight map)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
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
