"""``study notebooks``: the notebooks executed on the results (ipynb with outputs, HTML)."""

from __future__ import annotations

from pathlib import Path

from study.report.notebooks import execute_notebooks


def notebooks(source: Path, results: Path, out: Path) -> list[Path]:
    """Execute every notebook of ``source`` on ``results`` into ``out``."""
    return execute_notebooks(source, results, out)
