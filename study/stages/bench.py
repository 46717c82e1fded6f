"""``study bench`` (the ``speed`` stage): latency, throughput and FLOPs (study/eval/bench.py)."""

from __future__ import annotations

from pathlib import Path

from study.eval.bench import run_bench
from study.runs import RESULTS


def bench(
    params_path: str,
    experiments: list[str],
    profile: str | None = None,
    overrides: list[str] | None = None,
    out: Path = RESULTS / "bench.csv",
) -> list[Path]:
    """Time every model of the study (or ``experiments``) in interleaved rounds."""
    return run_bench(params_path, experiments, profile, overrides or [], out)
