"""Paper-style tables and figures from ``results/<experiment>/seed<k>/``: what ``study report``
writes. ``results/tables/``: Table 3 (fusion), the pairwise table, Table 1, the gradient
consistency and weight agreement tables, the test-size and ASFF* tables, the replication
scorecard (each as Markdown, LaTeX and CSV) and runs.csv; ``results/figures/``: the analysis
figures and the speed-accuracy figure; ``results/metrics.json``: the
compact metrics file that ``dvc exp show`` reads (AP, APs, APm, APl per experiment and seed).

The sections are built in :mod:`study.report.build`; ``study notebooks`` is
:mod:`study.report.notebooks`."""

from study.report.build import (
    analysis_report,
    build_report,
    compact_metrics,
    fusion_report,
    table1_report,
)

__all__ = ["analysis_report", "build_report", "compact_metrics", "fusion_report", "table1_report"]
