"""The analysis the paper argues but never measures (``study analyze``): gradient consistency
between pyramid levels (section 3.3), fusion-weight agreement with the assigned level, and the
arrays behind the weight-map figures. ``study report`` turns them into tables and figures."""

from study.analysis.run import analyze_run

__all__ = ["analyze_run"]
