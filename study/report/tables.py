"""Comparison tables from ``results/<variant>/*.json``: markdown for people, CSV for tools.

Each variant's ``metrics.json`` (written by ``study.eval.coco_eval``) is required;
``speed.json`` (``study.eval.speed.measure_speed``) and ``train_summary.json`` (the trainer's wall
time) are optional. AP values are shown as percentages (COCOeval fraction x 100) with one decimal;
``ΔAP`` is each variant's AP minus the reference variant's, in points. An empty cell means no
value: a size bucket without ground truth (COCOeval's -1), or a file that was not written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import StudyError
from study.utils import write_text

AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
DELTA = "ΔAP"
PAPER_AP = "paper AP (COCO val2017, 608)"
PAPER_MS = "paper ms (V100, 608)"
PAPER_SOURCE = "paper source"
MISSING = "–"
# Keys of train_summary.json that may hold the training wall time in seconds (first found wins).
WALL_KEYS = ("wall_seconds", "wall_time_s", "train_seconds", "seconds")

# The paper's numbers (shared/PAPER.md), in percent, at 608. Sources: [paper] the paper's
# text, [README] the official README, [reprint] the ASFF rows reprinted in the YOLOv4/YOLOX papers.
# Times are the README's per-image milliseconds on a V100.
PAPER_REFERENCE: dict[str, dict[str, Any]] = {
    "yolov3-original": {
        "AP": 33.0,
        "ms": 20.0,
        "split": "val2017",
        "source": "paper (AP), README (ms)",
    },
    "bof": {"AP": 37.0, "ms": 20.0, "split": "val2017", "source": "README (AP, ms)"},
    "baseline": {"AP": 38.8, "ms": 20.0, "split": "val2017", "source": "paper (AP), README (ms)"},
    "asff": {"AP": 40.6, "ms": 22.0, "split": "val2017", "source": "paper (AP), README (ms)"},
    "asff-star": {
        "AP": 42.4,
        "AP50": 63.0,
        "AP75": 47.4,
        "APs": 25.5,
        "APm": 45.7,
        "APl": 52.3,
        "ms": 22.0,
        "split": "test-dev",
        "source": "reprint (AP, test-dev), README (ms)",
    },
}


def _read_json(path: Path, required: bool) -> Any:
    """Parsed JSON, None for an optional file that is absent; StudyError naming the file."""
    if not path.is_file():
        if required:
            raise StudyError(f"{path}: file not found (has this variant been evaluated?)")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: invalid JSON: {exc}") from None


def _percent(value: Any, path: Path, key: str) -> float:
    """A metric fraction (or null) as a percentage (NaN for null)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyError(f"{path}: key {key!r} must be a number or null, got {value!r}")
    return 100.0 * float(value)


def _read_variant(results_dir: Path, variant: str) -> dict[str, Any]:
    """One table row: AP columns from metrics.json, speed and wall time where present."""
    path = results_dir / variant / "metrics.json"
    metrics = _read_json(path, required=True)
    if not isinstance(metrics, dict):
        raise StudyError(f"{path}: expected a JSON object, got {type(metrics).__name__}")
    missing = [k for k in AP_COLUMNS if k not in metrics]
    if missing:
        raise StudyError(f"{path}: missing keys {', '.join(missing)}")
    row: dict[str, Any] = {"variant": variant}
    row.update({k: _percent(metrics[k], path, k) for k in AP_COLUMNS})

    speed_path = results_dir / variant / "speed.json"
    speed = _read_json(speed_path, required=False)
    if isinstance(speed, dict):
        ms = speed.get("ms_mean", speed.get("ms"))
        row["ms"] = float(ms) if ms is not None else math.nan
        row["fps"] = float(speed["fps"]) if speed.get("fps") is not None else math.nan
        if speed.get("params") is not None:
            row["params M"] = float(speed["params"]) / 1e6
    elif speed is not None:
        raise StudyError(f"{speed_path}: expected a JSON object")

    summary_path = results_dir / variant / "train_summary.json"
    summary = _read_json(summary_path, required=False)
    if isinstance(summary, dict):
        wall = next((summary[k] for k in WALL_KEYS if summary.get(k) is not None), None)
        if wall is not None:
            row["train min"] = float(wall) / 60.0
    elif summary is not None:
        raise StudyError(f"{summary_path}: expected a JSON object")
    return row


def pick_reference(variants: Sequence[str], reference: str | None = None) -> str:
    """``reference`` if given, else ``baseline`` when present, else the first variant."""
    if reference is not None:
        if reference not in variants:
            raise StudyError(f"reference variant {reference!r} is not among {', '.join(variants)}")
        return reference
    return "baseline" if "baseline" in variants else variants[0]


def collect_metrics(
    results_dir: str | Path, variants: Sequence[str], reference: str | None = None
) -> pd.DataFrame:
    """One row per variant: AP columns in percent, ``ΔAP`` vs the reference, speed if measured.

    Values are unrounded; ``write_tables`` rounds for display. ``df.attrs["reference"]`` names the
    reference variant.
    """
    if not variants:
        raise StudyError("no variants to collect")
    results_dir = Path(results_dir)
    ref = pick_reference(list(variants), reference)
    df = pd.DataFrame([_read_variant(results_dir, v) for v in variants])
    ref_ap = df.loc[df["variant"] == ref, "AP"].iloc[0]
    df.insert(len(AP_COLUMNS) + 1, DELTA, df["AP"] - ref_ap)
    df.attrs["reference"] = ref
    return df


def add_paper_columns(df: pd.DataFrame, paper: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Copy of ``df`` with the paper's AP (and ms, source) beside the measured values."""
    out = df.copy()
    rows = [paper.get(v, {}) for v in out["variant"]]
    out[PAPER_AP] = [r.get("AP", math.nan) for r in rows]
    if any("ms" in r for r in paper.values()):
        out[PAPER_MS] = [r.get("ms", math.nan) for r in rows]
    if any("source" in r for r in paper.values()):
        out[PAPER_SOURCE] = [r.get("source", MISSING) for r in rows]
    return out


def _fmt(value: Any, column: str) -> str:
    """Display form of a cell: one decimal (two for params), a sign on deltas, '–' if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, str):
        return value
    if column == DELTA:
        return f"{value:+.1f}"
    return f"{value:.2f}" if column == "params M" else f"{value:.1f}"


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers rounded as displayed, for the CSV."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(2 if col == "params M" else 1)
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers formatted, explained below the table."""
    shown = pd.DataFrame({c: [_fmt(v, c) for v in df[c]] for c in df.columns})
    align = ["left" if c in ("variant", PAPER_SOURCE) else "right" for c in shown.columns]
    table = shown.to_markdown(index=False, disable_numparse=True, colalign=align)
    ref = df.attrs.get("reference")
    notes = ["COCO box AP x 100 (COCOeval), one decimal."]
    if ref is not None:
        notes.append(f"{DELTA}: AP minus the AP of `{ref}`, in points.")
    notes.append(f"{MISSING}: no value (no ground truth of that object size, or not measured).")
    if "ms" in df.columns:
        notes.append("ms: per image (speed.json: forward + decode + NMS, CUDA-synchronized).")
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def write_tables(
    df: pd.DataFrame,
    out_dir: str | Path,
    name: str = "comparison",
    paper: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write ``<out_dir>/<name>.md`` and ``<name>.csv`` atomically; return their paths."""
    out_dir = Path(out_dir)
    table = add_paper_columns(df, paper) if paper is not None else df.copy()
    table.attrs = dict(df.attrs)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    write_text(md_path, to_markdown(table))
    write_text(csv_path, _rounded(table).to_csv(index=False))
    return [md_path, csv_path]


def discover_variants(results_dir: str | Path) -> list[str]:
    """Sorted names of the ``results/<variant>/`` folders that hold a metrics.json."""
    return sorted(p.parent.name for p in Path(results_dir).glob("*/metrics.json"))


def build_report(
    results_dir: str | Path,
    variants: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """What ``study report`` runs: the comparison table with the paper's numbers beside it.

    ``variants`` None means every evaluated variant in ``results_dir``; ``out_dir`` defaults to
    ``results_dir/tables``.
    """
    results_dir = Path(results_dir)
    variants = list(variants) if variants else discover_variants(results_dir)
    if not variants:
        raise StudyError(f"{results_dir}: no results/<variant>/metrics.json found")
    df = collect_metrics(results_dir, variants)
    out = Path(out_dir) if out_dir is not None else results_dir / "tables"
    return write_tables(df, out, paper=PAPER_REFERENCE)
