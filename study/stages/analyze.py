"""``study analyze``: a run's gradient consistency and fusion weights (study/analysis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.analysis import analyze_run
from study.config import load_params
from study.resolved import tracked_config
from study.runs import run_paths
from study.utils import pick_device


def analyze(cfg: dict[str, Any], params_path: str) -> list[Path]:
    """The run's gradient consistency and fusion weights at its snapshots and its final weights;
    settings from params.yaml ``analysis``. It reads the run's tracked config only (train.yaml
    and eval.yaml of ``configs/<experiment>/seed<k>/``)."""
    settings = load_params(params_path).get("analysis") if Path(params_path).is_file() else None
    tracked = tracked_config(cfg)
    device = pick_device(tracked["eval"]["device"])
    return analyze_run(tracked, settings or {}, run_paths(cfg), device, source=params_path)
