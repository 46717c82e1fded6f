"""``study report --designs``: the extended comparison beside Table 3 (study/report/designs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from study.errors import StudyError
from study.report.designs import combined_bench, designs_report


def test_the_designs_join_table_3_statistics(designs_study: tuple[Path, dict]) -> None:
    results, params = designs_study
    designs_report(params, results)
    tables = results / "designs_report" / "tables"
    table = pd.read_csv(tables / "designs.csv")
    # every strategy of both groups is a row, in order: Table 3's, then the designs
    assert list(table["strategy"]) == ["none", "asff", "better", "copy"]
    assert list(table["experiment"]) == [
        "fusion/none",
        "fusion/asff",
        "designs/better",
        "designs/copy",
    ]
    # `copy` scored exactly none's detections: a zero difference, within noise
    copy = table.set_index("strategy").loc["copy"]
    assert copy["dAP_delta"] == pytest.approx(0.0)
    summary = pd.read_csv(tables / "designs_summary.csv").set_index("design")
    assert summary.at["copy", "vs none"] == "within noise"
    assert summary.at["better", "vs none"] == "better"
    # against asff the sign is the design's: better finds more than asff, copy less
    assert summary.at["better", "AP − asff"].startswith("+")
    assert summary.at["copy", "AP − asff"].startswith("-")
    # the pairwise table sets asff against all three others
    pairwise = pd.read_csv(tables / "fusion_vs_asff.csv")
    assert len(pairwise) == 3
    # the compact metrics hold the designs only (Table 3's are in results/metrics.json)
    metrics = json.loads((results / "designs_report" / "metrics.json").read_text())
    assert set(metrics) == {"designs/better", "designs/copy"}
    assert set(metrics["designs/copy"]) == {"seed0", "seed1", "seed2"}


def test_a_design_missing_its_runs_is_a_clear_error(designs_study: tuple[Path, dict]) -> None:
    results, params = designs_study
    with pytest.raises(StudyError, match="designs/absent"):
        designs_report({**params, "designs": ["better", "absent"]}, results)
    with pytest.raises(StudyError, match="designs"):
        designs_report({**params, "designs": []}, results)


def test_the_designs_bench_wins_and_table_3_bench_fills_in_params_only() -> None:
    """Milliseconds only from the designs bench (one set of rounds); Table 3's bench gives the
    models it alone timed their parameters and FLOPs, not its milliseconds."""
    cols = ["model", "total_ms_median", "params"]
    own = pd.DataFrame([["fusion/none", 1.0, 10], ["designs/x", 2.0, 20]], columns=cols)
    study = pd.DataFrame([["fusion/none", 9.0, 10], ["fusion/sum", 3.0, 30]], columns=cols)
    both = combined_bench(own, study)
    assert both is not None
    assert list(both["model"]) == ["fusion/none", "designs/x", "fusion/sum"]
    assert list(both["total_ms_median"][:2]) == [1.0, 2.0]
    assert pd.isna(both["total_ms_median"].iloc[2]) and both["params"].iloc[2] == 30
    assert combined_bench(None, None) is None
