"""``study train``: train one run (experiment, seed) into its weights, snapshots and logs
(study/engine/run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from study.engine.run import train_run
from study.errors import StudyError
from study.runs import run_paths

# What a resume checkpoint (runs/<experiment>/seed<k>/last.pt) holds; the trainer reads them all.
RESUME_KEYS = ("config_hash", "model", "optimizer", "epoch", "global_iter", "rng", "log")


def check_resume_state(path: Path) -> None:
    """A resume checkpoint that cannot be read is one clear error naming it and how to start
    over, before anything of the run is touched (its earlier outputs stay as they are)."""
    if not path.is_file():
        return
    start_over = "delete it, or rerun with --force, to start this run over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, empty, random bytes, another format
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudyError(
            f"{path}: not a readable resume checkpoint ({type(exc).__name__}: {detail[:160]}); "
            f"{start_over}"
        ) from None
    if not isinstance(state, dict):
        what = f"a {type(state).__name__}, not a dict"
    else:
        missing = [k for k in RESUME_KEYS if k not in state]
        what = f"no {', '.join(missing)}" if missing else None
    if what is not None:
        raise StudyError(f"{path}: not a resume checkpoint of `study train` ({what}); {start_over}")


def train(cfg: dict[str, Any], max_iters: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train the run ``cfg`` describes (left untouched when complete, unless ``force``); a
    resume checkpoint is checked first (``check_resume_state``)."""
    if not force:
        check_resume_state(run_paths(cfg).run_dir / "last.pt")
    return train_run(cfg, max_iters=max_iters, force=force)
