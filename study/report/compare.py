"""``study compare A B``: is a rerun (results folder B) consistent with the study's results (A)?

Every fusion run found in both folders (``fusion/<strategy>/seed<k>/metrics.json``) is paired by
strategy and seed:

- **runs**: AP, APs, APm, APl in A and B, and whether the run is reproduced exactly (its AP
  columns equal and its detections file byte-identical);
- **rerun spread**, per strategy: the mean difference B - A over its seeds with a t interval,
  the noise a rerun of the same code adds (zero when every run is reproduced exactly);
- **verdicts**: each strategy's difference to the reference (``none``) per metric, decided in A
  and in B with Table 3's seed interval (a Student t interval on the per-seed differences,
  Holm-adjusted over the strategies of each metric): beyond noise (+ or -) or within noise. A
  verdict of A that B does not reproduce fails the comparison (``study compare`` exits 1).
"""

from __future__ import annotations

import filecmp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from study.errors import StudyError
from study.report.collect import detections_path, read_run
from study.report.stats import seed_intervals, t_interval
from study.report.tables import delta_cell, pct

METRICS = ("AP", "APs", "APm", "APl")
GROUP = "fusion"


@dataclass
class Comparison:
    """The three tables of a comparison and whether every verdict of A holds in B."""

    runs: pd.DataFrame
    spread: pd.DataFrame
    verdicts: pd.DataFrame

    @property
    def holds(self) -> bool:
        return bool(self.verdicts["holds"].all())


def fusion_runs(results_dir: Path) -> set[tuple[str, int]]:
    """(strategy, seed) of every fusion run with a metrics file under ``results_dir``."""
    runs = set()
    for path in (results_dir / GROUP).glob("*/seed*/metrics.json"):
        seed = path.parent.name.removeprefix("seed")
        if seed.isdigit():
            runs.add((path.parent.parent.name, int(seed)))
    return runs


def _paired_runs(a: Path, b: Path) -> list[tuple[str, int]]:
    for folder in (a, b):
        if not folder.is_dir():
            raise StudyError(f"{folder}: no such results folder")
    in_a, in_b = fusion_runs(a), fusion_runs(b)
    both = sorted(in_a & in_b)
    if not both:
        raise StudyError(
            f"{a} and {b}: no fusion run in common ({len(in_a)} in A, {len(in_b)} in B; "
            f"expected {GROUP}/<strategy>/seed<k>/metrics.json in both)"
        )
    return both


def _run_table(a: Path, b: Path, pairs: list[tuple[str, int]]) -> pd.DataFrame:
    rows = []
    for strategy, seed in pairs:
        experiment = f"{GROUP}/{strategy}"
        ra, rb = read_run(a, experiment, seed), read_run(b, experiment, seed)
        da, db = detections_path(a, experiment, seed), detections_path(b, experiment, seed)
        same_metrics = all(ra[m] == rb[m] or (np.isnan(ra[m]) and np.isnan(rb[m])) for m in METRICS)
        exact = same_metrics and da.is_file() and db.is_file() and filecmp.cmp(da, db, False)
        row = {"strategy": strategy, "seed": seed}
        for m in METRICS:
            row |= {f"{m} A": ra[m], f"{m} B": rb[m], f"Δ{m}": rb[m] - ra[m]}
        rows.append(row | {"exact": exact})
    return pd.DataFrame(rows)


def _spread(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for strategy, group in runs.groupby("strategy", sort=False):
        row = {"strategy": strategy, "seeds": len(group), "exact": int(group["exact"].sum())}
        for m in METRICS:
            mean, lo, hi, _ = t_interval(list(group[f"Δ{m}"]))
            row |= {f"Δ{m}": mean, f"Δ{m} lo": lo, f"Δ{m} hi": hi}
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict(row: pd.Series) -> str:
    if not row["beyond_noise"]:
        return "within noise"
    return "beyond noise (+)" if row["delta"] > 0 else "beyond noise (-)"


def _verdicts_in(runs: pd.DataFrame, side: str, reference: str) -> pd.DataFrame:
    """Per strategy and metric: the difference to ``reference`` and its verdict in one folder."""
    by_seed = {  # metric -> seed x strategy, on the reference's seeds
        m: runs.pivot(index="seed", columns="strategy", values=f"{m} {side}").dropna(
            subset=[reference]
        )
        for m in METRICS
    }
    rows = []
    for strategy in runs["strategy"].unique():
        if strategy == reference:
            continue
        for m in METRICS:
            per_seed = list((by_seed[m][strategy] - by_seed[m][reference]).dropna())
            delta = float(np.mean(per_seed)) if per_seed else np.nan
            rows.append(
                {"family": "vs reference", "strategy": strategy, "metric": m}
                | {"delta": delta, "per_seed": per_seed}
            )
    out = seed_intervals(pd.DataFrame(rows))
    out["verdict"] = out.apply(_verdict, axis=1)
    return out


def compare_results(a: str | Path, b: str | Path, reference: str = "none") -> Comparison:
    """Compare the fusion runs of results folders ``a`` (the study) and ``b`` (a rerun)."""
    a, b = Path(a), Path(b)
    pairs = _paired_runs(a, b)
    runs = _run_table(a, b, pairs)
    if reference not in set(runs["strategy"]):
        raise StudyError(f"{a}, {b}: the reference {reference!r} has no run in common")
    va, vb = _verdicts_in(runs, "A", reference), _verdicts_in(runs, "B", reference)
    verdicts = va[["strategy", "metric", "delta", "lo", "hi", "verdict"]].rename(
        columns={"delta": "Δ A", "lo": "lo A", "hi": "hi A", "verdict": "verdict A"}
    )
    verdicts[["Δ B", "lo B", "hi B", "verdict B"]] = vb[["delta", "lo", "hi", "verdict"]].values
    verdicts["holds"] = verdicts["verdict A"] == verdicts["verdict B"]
    return Comparison(runs, _spread(runs), verdicts)


def _points(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{pct(x):+.1f}"


def _cell(delta: float, lo: float, hi: float) -> str:
    """A difference with its interval, as Table 3 prints it (:func:`tables.delta_cell`)."""
    beyond = np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0)
    return delta_cell({"delta": delta, "lo": lo, "hi": hi, "within_noise": not beyond})


def _cells(table: pd.DataFrame, delta: str, lo: str, hi: str) -> list[str]:
    cols = [table[delta], table[lo], table[hi]]
    return [_cell(d, low, high) for d, low, high in zip(*cols, strict=True)]


def comparison_text(c: Comparison, a: str | Path, b: str | Path) -> str:
    """The three tables in Markdown (AP x 100) and the outcome."""
    runs = pd.DataFrame(
        {
            "strategy": c.runs["strategy"],
            "seed": c.runs["seed"],
            "AP A": [f"{100 * v:.1f}" for v in c.runs["AP A"]],
            "AP B": [f"{100 * v:.1f}" for v in c.runs["AP B"]],
            "ΔAP": [_points(v) for v in c.runs["ΔAP"]],
            "ΔAPl": [_points(v) for v in c.runs["ΔAPl"]],
            "exact": ["yes" if e else "no" for e in c.runs["exact"]],
        }
    )
    spread = pd.DataFrame(
        {
            "strategy": c.spread["strategy"],
            "exact": [
                f"{e} of {n}" for e, n in zip(c.spread["exact"], c.spread["seeds"], strict=True)
            ],
            "ΔAP (B - A), 95 % t interval": _cells(c.spread, "ΔAP", "ΔAP lo", "ΔAP hi"),
        }
    )
    v = c.verdicts
    verdicts = pd.DataFrame(
        {
            "strategy": v["strategy"],
            "metric": v["metric"],
            "A": _cells(v, "Δ A", "lo A", "hi A"),
            "B": _cells(v, "Δ B", "lo B", "hi B"),
            "holds": ["yes" if h else "NO" for h in v["holds"]],
        }
    )
    exact = int(c.runs["exact"].sum())
    failed = int((~v["holds"]).sum())
    return "\n\n".join(
        [
            f"**Runs**, A = {a}, B = {b}: AP x 100; exact: metrics equal and detections "
            "byte-identical.",
            runs.to_markdown(index=False, disable_numparse=True),
            "**Rerun spread** per strategy: mean over seeds of B - A.",
            spread.to_markdown(index=False, disable_numparse=True),
            "**Verdicts**: difference to the reference with the Holm-adjusted seed interval, "
            "in A and in B.",
            verdicts.to_markdown(index=False, disable_numparse=True),
            f"{exact} of {len(c.runs)} runs reproduced exactly; "
            + (
                "every verdict of A holds in B."
                if failed == 0
                else f"{failed} verdict(s) of A do not hold in B."
            ),
        ]
    )
