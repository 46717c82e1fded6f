"""``study train``: train one run (experiment, seed) into its weights, snapshots and logs
(study/engine/run.py)."""

from __future__ import annotations

from typing import Any

from study.data import annotation_file, eval_dataset
from study.engine.run import train_run


def train(cfg: dict[str, Any], max_iters: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train the run ``cfg`` describes (left untouched when complete, unless ``force``), once
    :func:`check_scored_split` passes."""
    check_scored_split(cfg)
    return train_run(cfg, max_iters=max_iters, force=force)


def check_scored_split(cfg: dict[str, Any]) -> None:
    """The split a run's weights are scored on, checked before it is trained with the rule
    ``study evaluate`` applies (a box to score; no ground truth the loader drops, unless
    ``eval.dropped_gt`` says how to score it): no training is spent on a run whose evaluation
    would be refused."""
    dc = cfg["data"]
    if "eval" in cfg and dc.get("val_split"):
        if annotation_file(dc["root"], dc["val_split"]).is_file():
            eval_dataset(cfg).check_scorable(str(cfg["eval"].get("dropped_gt", "error")))
