"""Report: comparison tables from results/<variant>/*.json."""

from study.report.tables import PAPER_REFERENCE, build_report, collect_metrics, write_tables

__all__ = ["PAPER_REFERENCE", "build_report", "collect_metrics", "write_tables"]
