"""Learning curves, the convergence rule and the budget curve (params.yaml ``report``).

Every run's ``curve.json`` (study/eval/curve.py) holds its AP on one fixed validation subset at
each training snapshot and at the end. From them:

- **Convergence** (``RULE``): a strategy has converged when the mean over its seeds of the AP
  gained over the last quarter of its iterations (the end minus the curve at 75 % of the run,
  linearly interpolated between points) is below ``converge_gain`` AP points (1.0) and its mean
  AP at the end is at least ``report.min_ap`` (a flat curve at zero is not a plateau). The tables
  mark rows that have not, and a fusion claim gets a verdict only where its reference converged.
- **The budget curve**: the paired difference (by seed) between two strategies at every point
  of the curve, with its 95 % Student t interval over seeds (no multiplicity adjustment: it is
  read as a curve, not as separate claims) and the sign count: does a gain persist to the end,
  or is it faster early learning that the reference catches up with?
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.report.collect import run_dir
from study.report.stats import t_interval
from study.runs import CURVE

CONVERGE_GAIN = 1.0  # AP points over the last quarter of the run
RULE = (
    "converged: the mean over seeds of the AP gained over the last quarter of the iterations "
    "(AP at the end minus AP at 75 % of the run, interpolated, on the curve's validation subset) "
    f"is below {CONVERGE_GAIN:.1f} AP point, and its mean AP at the end is at least the report's "
    "min_ap (a run that never learned has a flat curve too)"
)


def read_curves(
    results_dir: Path, experiments: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """One row per (experiment, seed, point); empty when no run has a curve."""
    rows = []
    for exp in experiments:
        for seed in seeds:
            path = run_dir(results_dir, exp, seed) / CURVE
            if not path.is_file():
                continue
            for point in json.loads(path.read_text()):
                rows.append({"experiment": exp, "seed": int(seed), **point})
    return pd.DataFrame(rows)


def ap_at(points: pd.DataFrame, fraction: float, metric: str = "AP") -> float:
    """A run's ``metric`` at ``fraction`` of the run (linear between its points), in points."""
    p = points.sort_values("fraction")
    return 100 * float(np.interp(fraction, p["fraction"], p[metric].astype(float)))


def convergence(
    curves: pd.DataFrame, gain: float = CONVERGE_GAIN, min_ap: float = 0.0
) -> dict[str, dict[str, Any]]:
    """experiment -> {gain (mean last-quarter AP gain, points), per_seed, final (mean AP at the
    end, points), learned (final >= ``min_ap``, a fraction), converged, points}."""
    out: dict[str, dict[str, Any]] = {}
    if curves.empty:
        return out
    for exp, runs in curves.groupby("experiment", sort=False):
        ends = [(ap_at(points, 1.0), ap_at(points, 0.75)) for _, points in runs.groupby("seed")]
        per_seed = [end - quarter for end, quarter in ends]
        mean = float(np.mean(per_seed))
        final = float(np.mean([end for end, _ in ends]))
        learned = final >= 100 * min_ap
        out[str(exp)] = {
            "gain": mean,
            "per_seed": per_seed,
            "final": final,
            "learned": bool(learned),
            "converged": bool(mean < gain and learned),
            "points": int(runs.groupby("seed").size().min()),
        }
    return out


def curve_table(curves: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Mean AP (points) over seeds at every point of the curve, one row per strategy."""
    rows = []
    for exp, runs in curves.groupby("experiment", sort=False):
        mean = runs.groupby("iteration")["AP"].agg(["mean", "std"])
        rows.append(
            {"strategy": names.get(str(exp), str(exp))}
            | {
                f"it {int(it)}": f"{100 * r['mean']:.1f}"
                + ("" if pd.isna(r["std"]) else f" ± {100 * r['std']:.1f}")
                for it, r in mean.iterrows()
            }
        )
    return pd.DataFrame(rows)


def budget_curve(
    curves: pd.DataFrame, comparisons: Sequence[tuple[str, str]], metric: str = "AP"
) -> pd.DataFrame:
    """Rows (experiment, reference, iteration, fraction, delta, lo, hi, positive, seeds,
    per_seed) in points: ``experiment`` minus ``reference`` paired by seed at every point."""
    rows = []
    if curves.empty:
        return pd.DataFrame(rows)
    for exp, ref in comparisons:
        a = curves[curves["experiment"] == exp]
        b = curves[curves["experiment"] == ref]
        merged = a.merge(b, on=["seed", "iteration"], suffixes=("", "_ref"))
        for (it, frac), group in merged.groupby(["iteration", "fraction"]):
            diffs = (100 * (group[metric] - group[f"{metric}_ref"])).tolist()
            mean, lo, hi, _ = t_interval(diffs)
            rows.append(
                {
                    "experiment": exp,
                    "reference": ref,
                    "iteration": int(it),
                    "fraction": float(frac),
                    "delta": mean,
                    "lo": lo,
                    "hi": hi,
                    "positive": int(sum(d > 0 for d in diffs)),
                    "seeds": len(diffs),
                    "per_seed": diffs,
                }
            )
    return pd.DataFrame(rows)


def budget_display(budget: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The budget curve as a table: one row per comparison, one column per iteration."""
    rows = []
    for (exp, ref), group in budget.groupby(["experiment", "reference"], sort=False):
        row = {"comparison": f"{names.get(exp, exp)} − {names.get(ref, ref)}"}
        for _, r in group.sort_values("iteration").iterrows():
            interval = "" if pd.isna(r["lo"]) else f" [{r['lo']:+.1f}, {r['hi']:+.1f}]"
            row[f"it {int(r['iteration'])}"] = (
                f"{r['delta']:+.1f}{interval} {int(r['positive'])}/{int(r['seeds'])}"
            )
        rows.append(row)
    return pd.DataFrame(rows)
