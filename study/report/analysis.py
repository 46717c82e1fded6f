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


GRADIENT_COLUMNS = ("checkpoint", "fraction", "mode", "bucket", "locations", "share_mean")
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
                ("bins", "gradient_bins.csv", ("mode", "w_low", "share_mean")),
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


def _cells(
    row: dict[str, str],
    num: dict[str, object],
    shown: str,
    key: str,
    values: pd.Series,
    digits: int = 2,
    std: bool = True,
) -> None:
    """Seeds' ``values`` as the display cell ``shown`` (mean ± std) and the numeric columns
    ``key`` and (with ``std``) ``<key>_std``."""
    row[shown] = _ms(values, digits)
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
    """(display, numeric): per fusion, the conflict share at every checkpoint (full gradient,
    all sizes), then at the final weights detached, by size, the cosine and the weights."""
    ckpts = checkpoint_order(gradients)
    shown, numeric = [], []
    for fusion in fusions:
        g = gradients[gradients["fusion"] == fusion]

        def sel(ckpt: str, mode: str = "full", bucket: str = "all", g=g) -> pd.DataFrame:  # noqa: ANN001
            return g[(g["checkpoint"] == ckpt) & (g["mode"] == mode) & (g["bucket"] == bucket)]

        row: dict[str, str] = {"strategy": fusion}
        num: dict[str, object] = {"strategy": fusion}
        for ckpt in ckpts:
            _cells(row, num, f"share {ckpt}", f"share_{ckpt}", sel(ckpt)["share_mean"])
        final = sel("final")
        detached = sel("final", "detached")["share_mean"]
        _cells(row, num, "share final, weights detached", "share_final_detached", detached)
        for bucket in BUCKET_ORDER[1:]:
            by_size = sel("final", bucket=bucket)["share_mean"]
            _cells(row, num, f"share final {bucket}", f"share_final_{bucket}", by_size)
        _cells(row, num, "cosine final", "cosine_final", final["cosine_mean"], 3)
        _cells(row, num, "w_others final", "w_others_final", final["w_others_mean"], std=False)
        row["locations per seed"] = f"{int(final['locations'].mean())}" if len(final) else "–"
        num["locations"] = float(final["locations"].mean()) if len(final) else math.nan
        num["seeds"] = int(final["seed"].nunique()) if len(final) else 0
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
