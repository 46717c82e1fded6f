"""The learning curve of a run: COCO AP of every training snapshot (``train.snapshots``) and of
the final weights, all on one fixed validation subset (the first ``eval.curve_images`` images),
so that the points compare with each other. ``study evaluate`` writes it as ``curve.json``
beside ``metrics.json``; the report reads it for the convergence rule and the budget curve.

A point: ``epoch`` (epochs completed, fractional inside an epoch), ``iteration`` (optimizer
steps), ``fraction`` (of the run's iterations), the AP columns (fractions) and the ``weights``
file it scored.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from study.errors import StudyError
from study.eval.coco_eval import evaluate
from study.models.weights import load_weights

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def curve_config(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """``cfg`` restricted to the curve's images (None when ``eval.curve_images`` is null)."""
    n = cfg["eval"].get("curve_images")
    if not n:
        return None
    out = copy.deepcopy(dict(cfg))
    limit = out["data"].get("max_images")
    out["data"]["max_images"] = int(n) if limit is None else min(int(n), int(limit))
    return out


def _position(blob: Mapping[str, Any], path: Path) -> dict[str, Any]:
    snap = blob.get("snapshot")
    if snap is not None and "fraction" in snap:
        epoch, iteration, fraction = float(snap["epoch"]), int(snap["iteration"]), snap["fraction"]
    elif snap is None and "iterations" in blob:
        epoch, iteration = float(blob["config"]["train"]["epochs"]), int(blob["iterations"])
        fraction = 1.0
    else:
        raise StudyError(f"{path}: records no training position (retrain to get a curve)")
    return {"epoch": epoch, "iteration": iteration, "fraction": float(fraction)}


def learning_curve(
    weights: list[Path],
    cfg: Mapping[str, Any],
    make_dataset: Callable[[dict[str, Any]], Dataset],
    device: torch.device,
    check: Callable[[dict[str, Any], Path, Dataset], None] | None = None,
) -> list[dict[str, Any]]:
    """Score each weights file (snapshots, then the final weights) on the curve's subset of
    ``cfg`` (:func:`curve_config`); ``check(blob, path, dataset)`` vets each file first."""
    sub = curve_config(cfg)
    if sub is None:
        return []
    dataset = make_dataset(sub)
    points = []
    for path in weights:
        model, blob = load_weights(path, device)
        if check is not None:
            check(blob, path, dataset)
        metrics = evaluate(model, dataset, sub, device)
        points.append(
            {
                **_position(blob, path),
                **{m: metrics.get(m) for m in METRICS},
                "images": len(dataset),
                "weights": str(path),
            }
        )
    return sorted(points, key=lambda p: p["iteration"])
