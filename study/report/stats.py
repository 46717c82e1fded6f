"""Seed statistics and paired bootstrap intervals for the comparison tables.

The interval of a difference "strategy minus reference" is a two-stage bootstrap over the two
sources of noise a rerun of the study would see:

1. the validation images: each replicate draws the images with replacement (one draw shared by
   every run, since every run is scored on the same images: the comparison is paired);
2. the training seeds: each replicate also draws the seeds with replacement.

A replicate's difference is the mean over its drawn seeds of (strategy - reference) on its drawn
images, computed exactly as COCOeval would for that image multiset
(:class:`study.eval.resample.ImageWeightedAP`). The 95 % interval is the 2.5th..97.5th
percentile of the replicates; the point estimate is the mean over seeds of the full-data
difference. "Within noise" means the interval covers 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

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


def paired_bootstrap(
    scorers: Mapping[Run, ImageWeightedAP],
    pairs: Sequence[tuple[str, str]],
    seeds: Sequence[int],
    replicates: int = 500,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """Rows (experiment, reference, metric, delta, lo, hi, within_noise, per_seed) for each pair
    ``(experiment, reference)``: the difference experiment minus reference, every metric of
    :data:`METRICS`; values are fractions, ``per_seed`` the full-data difference of each seed.
    All pairs share one set of replicates (the same image and seed draws)."""
    seeds = list(seeds)
    image_sets = {tuple(s.image_ids) for s in scorers.values()}
    if len(image_sets) != 1:
        raise StudyError("the runs were scored on different validation images; cannot pair them")
    n_img, n_seed = len(next(iter(image_sets))), len(seeds)
    rng = np.random.default_rng(rng_seed)
    image_draws = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=replicates)
    seed_draws = rng.multinomial(n_seed, np.full(n_seed, 1.0 / n_seed), size=replicates)
    boot = {run: scorer.metrics(image_draws) for run, scorer in scorers.items()}
    full = {run: scorer.full() for run, scorer in scorers.items()}
    rows = []
    for exp, ref in dict.fromkeys(pairs):
        for metric in METRICS:
            diffs = np.stack(
                [boot[(exp, s)][metric] - boot[(ref, s)][metric] for s in seeds], axis=1
            )  # (R, S)
            replicate = (seed_draws * diffs).sum(axis=1) / n_seed
            point = [_diff(full[(exp, s)][metric], full[(ref, s)][metric]) for s in seeds]
            valid = replicate[np.isfinite(replicate)]
            lo, hi = np.percentile(valid, [2.5, 97.5]) if len(valid) else (np.nan, np.nan)
            rows.append(
                {
                    "experiment": exp,
                    "reference": ref,
                    "metric": metric,
                    "delta": float(np.nanmean(point)) if np.isfinite(point).any() else np.nan,
                    "lo": float(lo),
                    "hi": float(hi),
                    "within_noise": bool(lo <= 0.0 <= hi) if np.isfinite([lo, hi]).all() else True,
                    "per_seed": [float(v) for v in point],
                }
            )
    return pd.DataFrame(rows)


def _diff(a: float | None, b: float | None) -> float:
    return np.nan if a is None or b is None else a - b
