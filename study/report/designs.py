"""``study report --designs``: the extended comparison (issue 19) beside Table 3.

The fusion designs that came after ASFF (params.yaml ``designs``, experiments/designs: AFPN,
PANet's bottom-up path, one BiFPN layer, gather-and-distribute) and the parameter-matched
control (``none_matched``: no fusion, asff's parameter count) are trained on exactly the fusion
study's detector, profile and seeds, so they enter Table 3's statistics as more rows: the
paired seed differences against ``none`` and against ``asff``, Holm-adjusted over all the
strategies compared, the image bootstrap, the convergence rule, the gradient and weight
analyses, and each design's own published claim beside it ("literature (their detector)").

It writes ``results/designs_report/``: ``tables/designs.md`` (the extended Table 3),
``tables/fusion_vs_asff.md``, ``tables/convergence.md``, ``tables/budget.md``,
``tables/gradient_consistency.md``, ``tables/weight_agreement.md``, their figures under
``figures/``, ``metrics.json`` (AP by size per design and seed, for ``dvc exp show``) and the
provenance. Milliseconds are those of ``study bench --designs`` (results/designs_report/
bench.csv: none, asff and the designs timed in the same rounds); sum, concat and scalar, timed
only by Table 3's bench (another process), get their parameters and FLOPs from it but no ms.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import StudyError
from study.report.build import (
    analysis_report,
    category_names,
    compact_metrics,
    curves_report,
    fusion_experiments,
    fusion_report,
    profile_of,
    write_provenance,
)
from study.report.speed import read_bench
from study.report.tables import PAIRWISE, TABLE3, delta_cell, lookup_delta, write_table
from study.utils import write_json

log = logging.getLogger(__name__)

REPORT_DIR = "designs_report"  # below the results folder
TITLE = "Extended comparison (Table 3's strategies and the later fusion designs)"


def design_experiments(params: Mapping[str, Any]) -> list[str]:
    """The extended comparison's own runs: params ``designs`` (designs/<name>)."""
    return [f"designs/{d}" for d in params.get("designs") or []]


def combined_bench(designs: pd.DataFrame | None, study: pd.DataFrame | None) -> pd.DataFrame | None:
    """The designs bench, plus Table 3's bench for the models it did not time, with their
    parameters and FLOPs but not their milliseconds: latencies from two benches (two
    processes, two machine states) do not compare, only those timed in the same rounds."""
    frames = [b for b in (designs, study) if b is not None and not b.empty]
    if not frames:
        return None
    if len(frames) == 1:
        return frames[0]
    own, other = frames
    other = other[~other["model"].isin(set(own["model"]))].copy()
    other["total_ms_median"] = float("nan")
    return pd.concat([own, other], ignore_index=True)


def _against(deltas: pd.DataFrame, design: str, other: str) -> dict[str, Any] | None:
    """The AP difference ``design`` − ``other`` with its seed interval, from Table 3's family
    (against none) or the pairwise one (asff − design there, so the signs flip)."""
    for family, exp, ref, sign in (
        (TABLE3, design, other, 1.0),
        (PAIRWISE, other, design, -1.0),
    ):
        r = lookup_delta(deltas, ref, exp, "AP", family)
        if r is not None:
            lo, hi = sorted((sign * r["lo"], sign * r["hi"]))
            return {
                "delta": sign * r["delta"],
                "lo": lo,
                "hi": hi,
                "within_noise": r["within_noise"],
            }
    return None


def _verdict(row: Mapping[str, Any] | None) -> str:
    if row is None or pd.isna(row["delta"]) or pd.isna(row["lo"]):
        return "no interval"
    if row["within_noise"]:
        return "within noise"
    return "better" if row["delta"] > 0 else "worse"


def summary_table(deltas: pd.DataFrame, designs: list[str]) -> pd.DataFrame:
    """One row per design: its AP against none and against asff (points, seed interval) and
    the verdict in words ('better' / 'worse' only where the interval excludes 0)."""
    rows = []
    for design in designs:
        row: dict[str, Any] = {"design": Path(design).name}
        for other in ("fusion/none", "fusion/asff"):
            d = _against(deltas, design, other)
            name = Path(other).name
            row[f"AP − {name}"] = delta_cell(d)
            row[f"vs {name}"] = _verdict(d)
        rows.append(row)
    return pd.DataFrame(rows)


def designs_report(params: Mapping[str, Any], results_dir: str | Path) -> list[Path]:
    """What ``study report --designs`` runs: the extended Table 3, the pairwise table against
    ``report.pairwise`` (asff), convergence, the analyses, the compact metrics."""
    results_dir = Path(results_dir)
    designs = design_experiments(params)
    if not designs:
        raise StudyError("params: `designs` lists no design to report")
    base = fusion_experiments(params)
    experiments = base + designs
    root = results_dir / REPORT_DIR
    out, figures = root / "tables", root / "figures"
    own, _ = read_bench(root)
    study, _ = read_bench(results_dir)
    fusion = fusion_report(
        params,
        results_dir,
        out,
        combined_bench(own, study),
        experiments=experiments,
        table="designs",
        title=TITLE,
    )
    paths = list(fusion.paths)
    names = category_names(fusion.annotations)
    p, _ = analysis_report(
        params, results_dir, out, figures, fusion.runs, names, experiments=experiments
    )
    paths += p
    profile = profile_of(fusion.runs)
    p, _ = curves_report(fusion, out, figures, profile)
    paths += p
    table = summary_table(fusion.deltas, designs)
    caption = (
        f"**The designs in one line each**, profile `{profile}`: AP x 100 against none and "
        "against asff, paired by seed, with the Holm-adjusted seed intervals of designs.md and "
        "fusion_vs_asff.md; 'better' / 'worse' only where the interval excludes 0."
    )
    paths += write_table(out, "designs_summary", table, table, caption)
    metrics = root / "metrics.json"
    write_json(metrics, compact_metrics(fusion.runs[fusion.runs["experiment"].isin(designs)]))
    paths.append(metrics)
    paths.append(write_provenance(out, params, "study report --designs", paths))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths
