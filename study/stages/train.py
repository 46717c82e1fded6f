"""``study train``: train one run (experiment, seed) into its weights, snapshots and logs
(study/engine/run.py)."""

from __future__ import annotations

from typing import Any

from study.engine.run import train_run


def train(cfg: dict[str, Any], max_iters: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train the run ``cfg`` describes (left untouched when complete, unless ``force``; refused
    before any training when the split it is scored on would be refused)."""
    return train_run(cfg, max_iters=max_iters, force=force)
