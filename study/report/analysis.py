"""Tables of the analysis stage (``study analyze``): gradient consistency per fusion strategy and
checkpoint (the paper's section 3.3, measured), and weight agreement with the assigned level
(claim C6). Each run's ``results/<experiment>/seed<k>/analysis/`` is read; seeds are summarised
as mean ± standard deviation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from study.errors import StudyError
from study.report.collect import read_csv, read_json, run_dir

BUCKET_ORDER = ("all", "small", "medium", "large")


def analysis_dir(results_dir: Path, experiment: str, seed: int) -> Path:
    return run_dir(results_dir, experiment, seed) / "analysis"


LEVEL_NAMES = ("stride 32", "stride 16", "stride 8")  # the analysis's levels 0, 1, 2
# The gradient measures (study/analysis/gradients.py): column -> (shown as, scale, digits)
MEASURES = {
    "own_norm_mean": ("‖own‖ ×10³", 1e3, 2),
    "cross_norm_mean": ("‖cross‖ ×10³", 1e3, 2),
    "cosine_mean": ("cosine", 1.0, 3),
    "negative_cosine": ("cos < 0", 1.0, 2),
    "share_mean": ("share", 1.0, 2),
    "w_others_mean": ("w_others", 1.0, 2),
}
GRADIENT_COLUMNS = ("checkpoint", "fraction", "mode", "level", "bucket", "locations", *MEASURES)
BIN_COLUMNS = ("mode", "level", "w_low", "w_high", "locations", "cross_norm_mean", "share_mean")
AGREEMENT_COLUMNS = ("checkpoint", "bucket", "objects", "rate")


def collect_analysis(
    results_dir: Path, experiments: Sequence[str], seeds: Sequence[int]
) -> dict[str, pd.DataFrame]:
    """Long tables over every (experiment, seed): ``gradients``, ``bins`` and ``agreement``,
    each row's ``fusion`` the strategy's name (the experiment's stem: fusion/asff -> asff)."""
    frames: dict[str, list[pd.DataFrame]] = {"gradients": [], "bins": [], "agreement": []}
    images: set[int] = set()
    for experiment in experiments:
        fusion = Path(experiment).name
        for seed in seeds:
            folder = analysis_dir(results_dir, experiment, seed)
            for key, name, cols in (
                ("gradients", "gradients.csv", GRADIENT_COLUMNS),
                ("bins", "gradient_bins.csv", BIN_COLUMNS),
                ("agreement", "agreement.csv", AGREEMENT_COLUMNS),
            ):
                frame = read_csv(folder / name, cols, written_by="study analyze")
                frames[key].append(frame.assign(fusion=fusion, seed=int(seed)))
            summary = read_json(folder / "summary.json", required=True)
            if not isinstance(summary, dict) or not isinstance(summary.get("images"), int):
                raise StudyError(f"{folder / 'summary.json'}: no image count (key 'images')")
            images.add(summary["images"])
    out = {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for k, v in frames.items()}
    out["images"] = pd.DataFrame({"images": sorted(images)})
    return out


def _stats(values: pd.Series) -> tuple[float, float, int]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def _ms(values: pd.Series, digits: int = 2) -> str:
    mean, std, n = _stats(values)
    if n == 0:
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_cells(
    row: dict[str, str],
    num: dict[str, object],
    shown: str,
    key: str,
    values: pd.Series,
    digits: int = 2,
    std: bool = True,
    scale: float = 1.0,
) -> None:
    """Seeds' ``values`` as the display cell ``shown`` (mean ± std of ``scale`` x values) and
    the numeric columns ``key`` and (with ``std``) ``<key>_std`` (unscaled)."""
    row[shown] = _ms(scale * values, digits)
    mean, spread, _ = _stats(values)
    num[key] = mean
    if std:
        num[f"{key}_std"] = spread


def checkpoint_order(gradients: pd.DataFrame) -> list[str]:
    return list(
        gradients.drop_duplicates("checkpoint").sort_values("fraction")["checkpoint"].astype(str)
    )


def gradient_table(
    gradients: pd.DataFrame, fusions: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric): per fusion, level and size (rows without locations left out), every
    measure (``MEASURES``) at the final weights with the full gradient, and the cross-level
    norm with the weights detached. Levels are never pooled."""
    final = gradients[gradients["checkpoint"] == "final"]
    shown, numeric = [], []
    for fusion in fusions:
        for level, name in enumerate(LEVEL_NAMES):
            for bucket in BUCKET_ORDER:
                at = final[
                    (final["fusion"] == fusion)
                    & (final["level"] == level)
                    & (final["bucket"] == bucket)
                ]
                full, detached = at[at["mode"] == "full"], at[at["mode"] == "detached"]
                if full.empty or not (full["locations"] > 0).any():
                    continue
                row: dict[str, str] = {"strategy": fusion, "level": name, "size": bucket}
                num: dict[str, object] = {
                    "strategy": fusion,
                    "level": level,
                    "stride": name.split()[-1],
                    "bucket": bucket,
                }
                row["locations"] = f"{int(full['locations'].mean())}"
                num["locations"] = float(full["locations"].mean())
                for column, (label, scale, digits) in MEASURES.items():
                    seed_cells(row, num, label, column, full[column], digits, scale=scale)
                seed_cells(
                    row,
                    num,
                    "‖cross‖ ×10³, weights detached",
                    "cross_norm_detached",
                    detached["cross_norm_mean"],
                    scale=1e3,
                )
                num["seeds"] = int(full["seed"].nunique())
                shown.append(row)
                numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def gradient_checkpoint_table(
    gradients: pd.DataFrame, fusions: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric): per fusion and level (all sizes, full gradient), the cross-level
    norm, the negative-cosine share and the conflict share at every checkpoint: the same
    locations throughout, so a change is the model's."""
    ckpts = checkpoint_order(gradients)
    g = gradients[(gradients["mode"] == "full") & (gradients["bucket"] == "all")]
    shown, numeric = [], []
    for fusion in fusions:
        for level, name in enumerate(LEVEL_NAMES):
            at = g[(g["fusion"] == fusion) & (g["level"] == level)]
            if at.empty or not (at["locations"] > 0).any():
                continue
            row: dict[str, str] = {"strategy": fusion, "level": name}
            num: dict[str, object] = {"strategy": fusion, "level": level}
            for column, key in (
                ("cross_norm_mean", "cross"),
                ("negative_cosine", "negative_cosine"),
                ("share_mean", "share"),
            ):
                label, scale, digits = MEASURES[column]
                for ckpt in ckpts:
                    values = at[at["checkpoint"] == ckpt][column]
                    seed_cells(
                        row, num, f"{label} {ckpt}", f"{key}_{ckpt}", values, digits, scale=scale
                    )
            row["locations"] = f"{int(at['locations'].mean())}"
            num["locations"] = float(at["locations"].mean())
            shown.append(row)
            numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def agreement_table(
    agreement: pd.DataFrame, fusions: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numeric): claim C6 at the final weights, per fusion with weights and size."""
    shown, numeric = [], []
    final = agreement[agreement["checkpoint"] == "final"] if not agreement.empty else agreement
    for fusion in fusions:
        a = final[final["fusion"] == fusion] if not final.empty else final
        if a.empty:
            continue
        row = {"strategy": fusion}
        num: dict[str, object] = {"strategy": fusion, "chance": 1 / 3}
        for bucket in BUCKET_ORDER:
            b = a[a["bucket"] == bucket]
            row[f"agreement {bucket}"] = _ms(100 * b["rate"], 1) if len(b) else "–"
            num[f"rate_{bucket}"], num[f"rate_{bucket}_std"], _ = _stats(b["rate"])
            num[f"objects_{bucket}"] = float(b["objects"].mean()) if len(b) else math.nan
            num[f"rate_{bucket}_seeds"] = ";".join(f"{v:.4f}" for v in b["rate"])
        row["weight on assigned level"] = _ms(a[a["bucket"] == "all"]["w_assigned_mean"])
        row["objects per seed"] = f"{int(a[a['bucket'] == 'all']['objects'].mean())}"
        row["chance"] = "33.3"
        shown.append(row)
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def separated_below(a: Sequence[float], b: Sequence[float]) -> bool:
    """Every value of ``a`` below every value of ``b`` (with 3 vs 3 seeds: a one-sided
    permutation test at p = 1/20 = 0.05)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(a.size and b.size and np.nanmax(a) < np.nanmin(b))
