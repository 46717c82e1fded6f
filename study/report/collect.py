"""Read the per-run result files into one table (one row per (experiment, seed) run).

Each run has ``results/<experiment>/seed<k>/metrics.json`` (``study evaluate``, required) and,
where written, ``train_summary.json`` (``study train``). Latency, parameters and FLOPs come from
``results/bench.csv`` (``study bench``; study/report/speed.py adds them).
Metric values stay COCOeval fractions here; the tables turn them into percentages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import StudyError
from study.eval.coco_eval import DETECTIONS

AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def run_dir(results_dir: Path, experiment: str, seed: int) -> Path:
    return Path(results_dir) / experiment / f"seed{int(seed)}"


def read_json(path: Path, required: bool) -> Any:
    """Parsed JSON, None for an optional file that is absent; StudyError naming the file."""
    if not path.is_file():
        if required:
            raise StudyError(f"{path}: file not found (has this run been evaluated?)")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: invalid JSON: {exc}") from None


def read_csv(
    path: Path, columns: Sequence[str] = (), written_by: str | None = None
) -> pd.DataFrame | None:
    """The CSV file ``path``, which must have ``columns``; None when it is absent, unless
    ``written_by`` names the command that writes it (then a StudyError, as for a file that is
    not a readable CSV or lacks a column, naming the file)."""
    if not path.is_file():
        if written_by is not None:
            raise StudyError(f"{path}: file not found (run `{written_by}` for this run)")
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: not a readable CSV: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StudyError(f"{path}: missing columns {', '.join(missing)}")
    return frame


def _read_object(path: Path, required: bool) -> dict[str, Any]:
    """A JSON object ({} for an optional file that is absent); StudyError naming the file."""
    data = read_json(path, required)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _fraction(value: Any, path: Path, key: str) -> float:
    """A metric (or null: no ground truth of that size) as a float (NaN for null)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyError(f"{path}: key {key!r} must be a number or null, got {value!r}")
    return float(value)


def read_run(results_dir: Path, experiment: str, seed: int) -> dict[str, Any]:
    """One row: metrics, the evaluation size, and training time where written."""
    folder = run_dir(results_dir, experiment, seed)
    path = folder / "metrics.json"
    metrics = _read_object(path, required=True)
    missing = [k for k in AP_COLUMNS if k not in metrics]
    if missing:
        raise StudyError(f"{path}: missing keys {', '.join(missing)}")
    meta = metrics.get("meta") or {}
    row: dict[str, Any] = {"experiment": experiment, "seed": int(seed)}
    row.update({k: _fraction(metrics[k], path, k) for k in AP_COLUMNS})
    row["profile"] = meta.get("profile")
    row["dataset"] = (meta.get("dataset") or {}).get("root")
    row["ann_file"] = (meta.get("dataset") or {}).get("ann_file")
    row["num_images"] = (meta.get("dataset") or {}).get("num_images")
    row["device"] = meta.get("device")

    row["img_size"] = _optional((meta.get("protocol") or {}).get("img_size"))

    summary = _read_object(folder / "train_summary.json", required=False)
    row["train_min"] = _optional(summary.get("wall_seconds")) / 60.0
    row["iterations"] = _optional(summary.get("iterations"))
    return row


def _optional(value: Any) -> float:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else math.nan
    )


def collect_runs(
    results_dir: str | Path, experiments: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """One row per (experiment, seed), in the order given; every run must have metrics."""
    if not experiments:
        raise StudyError("no experiments to collect")
    rows = [read_run(Path(results_dir), e, s) for e in experiments for s in seeds]
    return pd.DataFrame(rows)


def detections_path(results_dir: str | Path, experiment: str, seed: int) -> Path:
    return run_dir(Path(results_dir), experiment, seed) / DETECTIONS
