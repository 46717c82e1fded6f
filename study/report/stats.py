"""Seed statistics and the intervals of the comparison tables.

A difference "strategy minus reference" (paired by seed: both trained with seed k) gets:

- **the seed interval** (what decides "beyond noise"): a Student t interval on the per-seed
  differences (n - 1 degrees of freedom), adjusted for the number of comparisons in its table
  (one family per table and metric) by Holm's step-down: the comparison with the k-th smallest
  p of m is tested at level 0.05 / (m - k + 1) while every smaller p was rejected, at 0.05 / m
  after the first that was not, and its interval is drawn at that level, so the interval
  excludes 0 exactly when Holm rejects. With three seeds the t quantile alone is 4.3 (no
  adjustment) to 8.9 (four comparisons): only large, consistent differences clear it. A
  bootstrap over three seeds could only return means between the smallest and the largest
  per-seed difference, which is why it is not used for this.
- **the sign count**: in how many seeds the difference is positive (k of n).
- **the test-set interval** (a separate column): a bootstrap over the validation images with the
  seeds fixed (each replicate draws the images with replacement, one draw shared by every run,
  and averages the difference over the seeds, computed exactly as COCOeval would for that image
  multiset, :class:`study.eval.resample.ImageWeightedAP`): the noise of a finite test set.

The point estimate is the mean over seeds of the full-data difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.errors import StudyError
from study.eval.resample import METRICS, ImageWeightedAP

Run = tuple[str, int]  # (experiment, seed)


def seed_summary(runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per experiment (in first-seen order): ``<col>`` mean and ``<col>_std`` (sample standard
    deviation over seeds, NaN with one seed) of each column, and ``seeds`` (how many)."""
    order = list(dict.fromkeys(runs["experiment"]))
    grouped = runs.groupby("experiment", sort=False)
    out = pd.DataFrame({"experiment": order})
    out["seeds"] = [int(grouped.get_group(e)["seed"].nunique()) for e in order]
    for col in columns:
        out[col] = [grouped.get_group(e)[col].mean() for e in order]
        out[f"{col}_std"] = [
            grouped.get_group(e)[col].std(ddof=1) if len(grouped.get_group(e)) > 1 else np.nan
            for e in order
        ]
    return out


ALPHA = 0.05


def t_interval(values: Sequence[float], alpha: float = ALPHA) -> tuple[float, float, float, float]:
    """(mean, lo, hi, two-sided p of mean = 0) of a Student t interval at level 1 - ``alpha`` on
    ``values`` (non-finite ones left out); NaN bounds and p = 1 with fewer than two values."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return np.nan, np.nan, np.nan, 1.0
    mean = float(x.mean())
    if len(x) < 2:
        return mean, np.nan, np.nan, 1.0
    se = float(x.std(ddof=1)) / np.sqrt(len(x))
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return mean, mean, mean, p
    df = len(x) - 1
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * sps.t.sf(abs(mean) / se, df))
    return mean, mean - half, mean + half, p


def holm_levels(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Per comparison, the level Holm's step-down tests it at (see the module docstring):
    ``alpha / (m - k + 1)`` for the k-th smallest p while all smaller ones are rejected, then
    ``alpha / m``. A comparison is rejected when its p is below its level."""
    m = len(pvalues)
    levels = [alpha / max(1, m)] * m
    stepping = True
    for k, i in enumerate(np.argsort(pvalues, kind="stable")):
        if not stepping:
            break
        levels[i] = alpha / (m - k)
        stepping = pvalues[i] < levels[i]
    return levels


def seed_intervals(
    rows: pd.DataFrame, family: str = "family", alpha: float = ALPHA
) -> pd.DataFrame:
    """``rows`` (one per comparison and metric, with ``per_seed`` differences) with the seed
    columns: ``lo``, ``hi`` (Holm-adjusted t interval), ``p``, ``level`` (Holm's), ``beyond_noise``,
    ``within_noise``, ``positive`` and ``seeds`` (the sign count k of n). Families: ``family`` x
    metric."""
    out = rows.copy()
    for col in ("lo", "hi", "p", "level"):
        out[col] = np.nan
    out["positive"] = [int(sum(v > 0 for v in d if np.isfinite(v))) for d in out["per_seed"]]
    out["seeds"] = [int(sum(np.isfinite(v) for v in d)) for d in out["per_seed"]]
    for _, idx in out.groupby([family, "metric"], sort=False).groups.items():
        p = [t_interval(out.at[i, "per_seed"])[3] for i in idx]
        for i, level in zip(idx, holm_levels(p, alpha), strict=True):
            _, lo, hi, pv = t_interval(out.at[i, "per_seed"], level)
            out.loc[i, ["lo", "hi", "p", "level"]] = [lo, hi, pv, level]
    finite = np.isfinite(out["lo"]) & np.isfinite(out["hi"])
    out["beyond_noise"] = finite & ((out["lo"] > 0) | (out["hi"] < 0))
    out["within_noise"] = ~out["beyond_noise"]
    return out


def paired_differences(
    scorers: Mapping[Run, ImageWeightedAP],
    families: Mapping[str, Sequence[tuple[str, str]]],
    seeds: Sequence[int],
    replicates: int = 500,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """Rows (family, experiment, reference, metric, delta, per_seed, the seed columns of
    :func:`seed_intervals`, boot_lo, boot_hi) for each pair ``(experiment, reference)`` of each
    family (a table), every metric of :data:`METRICS`; values are fractions. The test-set
    interval (boot_lo, boot_hi) shares one set of image draws across all pairs."""
    seeds = list(seeds)
    image_sets = {tuple(s.image_ids) for s in scorers.values()}
    if len(image_sets) != 1:
        raise StudyError("the runs were scored on different validation images; cannot pair them")
    n_img = len(next(iter(image_sets)))
    rng = np.random.default_rng(rng_seed)
    image_draws = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=replicates)
    boot = {run: scorer.metrics(image_draws) for run, scorer in scorers.items()}
    full = {run: scorer.full() for run, scorer in scorers.items()}
    rows = []
    for fam, pairs in families.items():
        for exp, ref in dict.fromkeys(pairs):
            for metric in METRICS:
                diffs = np.stack(
                    [boot[(exp, s)][metric] - boot[(ref, s)][metric] for s in seeds], axis=1
                )  # (R, S)
                with warnings.catch_warnings():  # a replicate without the metric: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    replicate = np.nanmean(diffs, axis=1)
                point = [_diff(full[(exp, s)][metric], full[(ref, s)][metric]) for s in seeds]
                valid = replicate[np.isfinite(replicate)]
                lo, hi = np.percentile(valid, [2.5, 97.5]) if len(valid) else (np.nan, np.nan)
                rows.append(
                    {
                        "family": fam,
                        "experiment": exp,
                        "reference": ref,
                        "metric": metric,
                        "delta": float(np.nanmean(point)) if np.isfinite(point).any() else np.nan,
                        "per_seed": [float(v) for v in point],
                        "boot_lo": float(lo),
                        "boot_hi": float(hi),
                    }
                )
    return seed_intervals(pd.DataFrame(rows))


def _diff(a: float | None, b: float | None) -> float:
    return np.nan if a is None or b is None else a - b
