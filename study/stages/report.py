"""``study report``: paper-style tables, figures, the scorecard and results/metrics.json; with
``--designs`` the extended comparison's (results/designs_report/)."""

from __future__ import annotations

from pathlib import Path

from study.config import load_params
from study.report import build_report
from study.report.designs import designs_report


def report(params_path: str, results: Path, designs: bool = False) -> list[Path]:
    """Every table and figure of the study from ``results``, into ``results/tables`` (or the
    extended comparison's, ``designs``)."""
    params = load_params(params_path)
    if designs:
        return designs_report(params, results)
    return build_report(params, results, results / "tables")
