"""Where each strategy's AP goes: the TIDE error breakdown (study/eval/errors.py) of every run's
detections, summarised per strategy and object size with the seeds' spread, a table and a
figure. Read from each run's ``detections.json.gz`` (``study evaluate``) and the validation
annotations it was scored on; nothing is re-evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from study.eval.coco_eval import read_detections  # noqa: E402
from study.eval.errors import MAIN_ERRORS, SIZES, SPECIAL_ERRORS, tide  # noqa: E402
from study.report.analysis import seed_cells  # noqa: E402
from study.report.collect import detections_path  # noqa: E402
from study.report.figures import save  # noqa: E402
from study.report.tables import write_table  # noqa: E402

ERROR_NAMES = {
    "cls": "cls",
    "loc": "loc",
    "both": "both",
    "dupe": "dupe",
    "bkg": "bkg",
    "miss": "miss",
    "FP": "FP (all)",
    "FN": "FN (all)",
}


def ground_truth(coco_gt: COCO, image_ids: Sequence[int]) -> dict:
    """The annotation dict of ``image_ids`` (the images the runs were evaluated on)."""
    ids = list(image_ids)
    return {
        "images": coco_gt.loadImgs(ids),
        "annotations": coco_gt.loadAnns(coco_gt.getAnnIds(ids)),
    }


def error_rows(results_dir: Path, runs: pd.DataFrame, coco_gt: COCO) -> pd.DataFrame:
    """One row per (experiment, seed, size, error): dAP (AP points) and count; size ``all``
    also has the special errors FP and FN, and ``AP50`` (TIDE's own AP at IoU 0.5)."""
    image_ids = sorted(coco_gt.imgs)[: int(runs["num_images"].iloc[0])]
    gt = ground_truth(coco_gt, image_ids)
    rows = []
    for exp, seed in zip(runs["experiment"], runs["seed"], strict=True):
        result = tide(gt, read_detections(detections_path(results_dir, exp, int(seed))))
        base = {"experiment": exp, "strategy": Path(exp).name, "seed": int(seed)}
        rows.append({**base, "size": "all", "error": "AP50", "dAP": result.ap50, "count": None})
        for kind in (*MAIN_ERRORS, *SPECIAL_ERRORS):
            count = result.counts.get(kind)
            rows.append(
                {**base, "size": "all", "error": kind, "dAP": result.delta[kind], "count": count}
            )
        for size in SIZES:
            for kind in MAIN_ERRORS:
                rows.append(
                    {
                        **base,
                        "size": size,
                        "error": kind,
                        "dAP": result.delta_by_size[size][kind],
                        "count": result.counts_by_size[size][kind],
                    }
                )
    return pd.DataFrame(rows)


def error_table(rows: pd.DataFrame, sizes: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric): per strategy and size, each error type's dAP (mean ± std over
    seeds) and mean count; size ``all`` leads with AP50 and ends with FP and FN."""
    shown, numeric = [], []
    for strategy in dict.fromkeys(rows["strategy"]):
        for size in sizes:
            at = rows[(rows["strategy"] == strategy) & (rows["size"] == size)]
            row: dict[str, str] = {"strategy": strategy}
            if len(sizes) > 1:
                row["size"] = size
            num: dict[str, object] = {"strategy": strategy, "size": size}
            kinds = ["AP50", *MAIN_ERRORS, *SPECIAL_ERRORS] if size == "all" else list(MAIN_ERRORS)
            for kind in kinds:
                values = at[at["error"] == kind]
                label = "AP50" if kind == "AP50" else f"Δ {ERROR_NAMES[kind]}"
                seed_cells(row, num, label, kind, values["dAP"], 1)
                if kind in MAIN_ERRORS:
                    num[f"{kind}_count"] = float(values["count"].mean())
            num["seeds"] = int(at["seed"].nunique())
            shown.append(row)
            numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def error_figure(rows: pd.DataFrame, out_dir: Path, caption: str) -> list[Path]:
    """dAP per main error type (bars: mean over seeds, points: seeds), one colour per
    strategy; panels: all sizes, small, medium, large."""
    data = rows[rows["error"].isin(MAIN_ERRORS)]
    strategies = list(dict.fromkeys(data["strategy"]))
    palette = dict(zip(strategies, sns.color_palette("tab10", len(strategies)), strict=True))
    panels = ("all", *SIZES)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True)
    for ax, size in zip(axes, panels, strict=True):
        at = data[data["size"] == size]
        common = {
            "data": at,
            "x": "error",
            "y": "dAP",
            "hue": "strategy",
            "order": list(MAIN_ERRORS),
            "hue_order": strategies,
            "palette": palette,
            "ax": ax,
        }
        sns.barplot(**common, errorbar=None, alpha=0.6, legend=size == "all")
        sns.stripplot(**common, dodge=True, jitter=False, size=2.5, legend=False)  # reproducible
        ax.set_title(f"{size} objects" if size != "all" else "all sizes", fontsize=9)
        ax.set_xlabel("")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("ΔAP50 when fixed (points)")
    axes[0].legend(fontsize=7, title="fusion", title_fontsize=7)
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "error_breakdown")


def errors_report(
    results_dir: Path,
    runs: pd.DataFrame,
    coco_gt: COCO,
    out_dir: Path,
    figures_dir: Path,
    where: str,
) -> tuple[list[Path], pd.DataFrame]:
    """``error_breakdown`` (every strategy, all sizes) and ``error_breakdown_sizes`` tables and
    the ``error_breakdown`` figure; (paths, the long rows)."""
    rows = error_rows(results_dir, runs, coco_gt)
    notes = [
        "TIDE (Bolya et al., ECCV 2020) at IoU 0.5, background threshold 0.1, 100 detections "
        "per image: each false positive is a loc (right class, IoU 0.1-0.5), cls (wrong class, "
        "IoU >= 0.5), dupe (its object already matched), bkg (IoU <= 0.1 with every object) or "
        "both error; an object no detection found is a miss. Δ: AP50 points gained by fixing "
        "every error of that type alone (TIDE's AP: 101-point, mean over classes). FP / FN: "
        "every false positive scored last / every missed object removed.",
        "Checked against tidecv 1.0.1 (tests/eval/test_errors.py). Per size, an error counts in "
        "the size of its object (loc, cls, miss) or of the detection (dupe, bkg, both), by box "
        "area in original pixels.",
    ]
    shown, numeric = error_table(rows, ["all"])
    caption = (
        f"**Error breakdown (TIDE)**, {where}: AP50 and the AP50 each error type costs, mean ± "
        "std over seeds."
    )
    paths = write_table(out_dir, "error_breakdown", shown, numeric, caption, notes)
    shown, numeric = error_table(rows, SIZES)
    caption = (
        f"**Error breakdown by object size (TIDE)**, {where}: the AP50 each error type of "
        "that size costs, mean ± std over seeds."
    )
    paths += write_table(out_dir, "error_breakdown_sizes", shown, numeric, caption, notes)
    paths += error_figure(
        rows, figures_dir, f"Where AP50 goes, per strategy (TIDE; {where}); points: seeds"
    )
    return paths, rows
