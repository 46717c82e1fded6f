"""``study report``: paper-style tables, figures, the scorecard and results/metrics.json."""

from __future__ import annotations

from pathlib import Path

from study.config import load_params
from study.report import build_report


def report(params_path: str, results: Path) -> list[Path]:
    """Every table and figure of the study from ``results``, into ``results/tables``."""
    return build_report(load_params(params_path), results, results / "tables")
