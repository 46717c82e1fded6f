"""One training run (experiment, seed) into its weights, snapshots and logs, as ``study train``
and ``study pretrain`` deliver it: a finished run is left untouched, a stopped or failed one
resumes from its last checkpoint."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from study.data import annotation_file, eval_dataset
from study.engine.distributed import cleanup, process_rank
from study.engine.trainer import Trainer, read_resume_state
from study.provenance import provenance
from study.resolved import config_hash, training_config
from study.runs import RunPaths, run_paths
from study.utils import ensure_writable, swap_in, write_json

log = logging.getLogger(__name__)
# runs/<experiment>/seed<k>/<this>: the training config hash the staging folders belong to
STAGING_OWNER = "staging.config"


def finished(paths: RunPaths, cfg_hash: str) -> dict[str, Any] | None:
    """The summary of a complete run of this training config at ``paths``, else None."""
    summary_path = paths.results / "train_summary.json"
    if not (paths.model.is_file() and summary_path.is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None
    complete = summary.get("complete", True) and summary.get("config_hash") == cfg_hash
    return summary if complete else None


def train_run(
    cfg: dict[str, Any], max_iters: int | None = None, force: bool = False
) -> dict[str, Any]:
    """Train one run. Its logs (``live/``) and snapshots are written beside the previous run's
    and swapped in with the weights at the end, so a run that fails (or diverges) leaves the
    previous run's files matching each other. A run already complete with this training config
    is left untouched unless ``force``.

    The resume state is one unit owned by one training config: the checkpoint
    (``runs/<experiment>/seed<k>/last.pt``, which also holds the logged history), the staging
    folder beside the snapshots (those taken before that checkpoint are only there) and the
    owner file naming the config. A run that stops (Ctrl-C, a kill, an error, ``--max-iters``)
    keeps it and the same command resumes from the checkpoint; another config, ``--force``, or
    a unit without its checkpoint or owner starts the run over and removes it; a complete run
    removes it, so a later run never resumes from the end of a finished one. A run to train is
    first checked against the split it will be scored on (:func:`check_scored_split`)."""
    name, paths = cfg["name"], run_paths(cfg)
    cfg_hash = config_hash(training_config(cfg))
    done = finished(paths, cfg_hash)
    if done is not None and not force and max_iters is None:
        print(
            f"{name} seed {cfg['train']['seed']}: already trained with this config "
            f"({paths.model}, config {cfg_hash}); nothing was changed. Retrain with --force"
        )
        return done
    check_scored_split(cfg)
    ensure_writable(paths.run_dir, paths.model.parent, paths.results, paths.snapshots.parent)
    live_new, snapshots_new = _staged(paths.results / "live"), _staged(paths.snapshots)
    ckpt, owner = paths.run_dir / "last.pt", paths.run_dir / STAGING_OWNER
    owned = not force and owner.is_file() and owner.read_text() == cfg_hash
    state = read_resume_state(ckpt) if owned else None  # a corrupt one: an error, nothing touched
    main = process_rank() == 0  # under torchrun, rank 0 owns the files
    if main and state is None:
        if ckpt.is_file() and not force:
            log.info("%s: not resumed (no staging of this config beside it); starting over", ckpt)
        _remove(live_new, snapshots_new, ckpt, owner)
    if main:
        owner.write_text(cfg_hash)
    try:
        summary = _fit(cfg, paths, live_new, snapshots_new, max_iters, state)
    except BaseException:
        if main:  # a resumed run rewrites live/ from its checkpoint: only the snapshots stay
            _remove(live_new)
        raise
    if main and max_iters is None:
        _remove(live_new, snapshots_new, owner, ckpt)
    return summary


def check_scored_split(cfg: dict[str, Any]) -> None:
    """The split a run's weights are scored on, checked before it is trained with the rule
    ``study evaluate`` applies (a box to score; no ground truth the loader drops, unless
    ``eval.dropped_gt`` says how to score it): no training is spent on a run whose evaluation
    would be refused."""
    dc = cfg["data"]
    if "eval" in cfg and dc.get("val_split"):
        if annotation_file(dc["root"], dc["val_split"]).is_file():
            eval_dataset(cfg).check_scorable(str(cfg["eval"].get("dropped_gt", "error")))


def _fit(
    cfg: dict[str, Any],
    paths: RunPaths,
    live_new: Path,
    snapshots_new: Path,
    max_iters: int | None,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    trainer = Trainer(
        cfg,
        paths.run_dir,
        live_dir=live_new,
        max_iters=max_iters,
        snapshot_dir=snapshots_new,
        resume=state,
    )
    summary = trainer.fit()
    if trainer.dist.is_main:
        # Weights and summary are written beside their final names and renamed in together with
        # live/ and the snapshots, so a failure while writing (a full disk) changes none of them.
        summary_path = paths.results / "train_summary.json"
        staged = {paths.model: _staged(paths.model), summary_path: _staged(summary_path)}
        try:
            trainer.save_weights(staged[paths.model], {"iterations": trainer.global_iter})
            write_json(
                staged[summary_path],
                {
                    **summary,
                    "complete": max_iters is None,
                    "config": {"name": cfg["name"], **training_config(cfg)},
                    "model_spec": trainer.model.spec,
                    "params": sum(p.numel() for p in trainer.model.parameters()),
                    "provenance": provenance(training_config(cfg), trainer.device),
                },
            )
            for final, new in staged.items():
                os.replace(new, final)
        finally:
            _remove(*staged.values())
        # live/ is moved in (a resumed run rewrites it from its checkpoint); a partial run
        # (--max-iters) delivers a copy of its snapshots, whose staging stays with the checkpoint.
        if live_new.is_dir():
            swap_in(live_new, paths.results / "live")
        snapshots_new.mkdir(parents=True, exist_ok=True)
        _deliver(snapshots_new, paths.snapshots, keep=max_iters is not None)
        log.info(
            "%s seed %d: trained %d iterations in %.0f s (%.1f images/s)",
            cfg["name"],
            cfg["train"]["seed"],
            summary["iterations"],
            summary["wall_seconds"],
            summary["images_per_s"],
        )
    cleanup(trainer.dist)
    return summary


def _deliver(staging: Path, final: Path, keep: bool) -> None:
    """Swap ``staging`` in as ``final``; with ``keep``, a copy of it (the staging stays)."""
    if keep:
        copy = staging.with_name(f"{staging.name}.copy")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(staging, copy)
        staging = copy
    swap_in(staging, final)


def _staged(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.new")


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
