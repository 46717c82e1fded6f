"""``study bench`` (the ``speed`` and ``speed-designs`` stages): latency, throughput and FLOPs
(study/eval/bench.py)."""

from __future__ import annotations

from pathlib import Path

from study.config import load_params
from study.eval.bench import default_experiments, run_bench
from study.runs import RESULTS


def bench(
    params_path: str,
    experiments: list[str],
    profile: str | None = None,
    overrides: list[str] | None = None,
    out: Path = RESULTS / "bench.csv",
    designs: bool = False,
) -> list[Path]:
    """Time every model of the study (or ``experiments``; ``designs``: the extended
    comparison's, params ``designs`` with Table 3's none and asff) in interleaved rounds."""
    if designs:
        experiments = [e for e, _ in default_experiments(load_params(params_path), designs=True)]
    return run_bench(params_path, experiments, profile, overrides or [], out)
