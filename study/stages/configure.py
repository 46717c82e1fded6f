"""``study configure``: every run's resolved config, split by what it can affect.

For each run of the study (params ``fusions`` and ``designs`` x ``seeds``, ``table1`` x
``table1_seeds``) it writes ``configs/<experiment>/seed<k>/train.yaml`` (what can change the
trained weights) and ``eval.yaml`` (what the evaluation reads), study/resolved.py. The training
stages depend on ``train.yaml`` instead of the experiment files and params.yaml, so an edit
retrains exactly the runs whose training config it changes; a comment, a logging or an
evaluation setting retrains none.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from study.config import load_params, pretrain_settings, resolve_run
from study.resolved import evaluation_config, training_config, write_part
from study.runs import CONFIGS, paths_of
from study.utils import swap_in


def study_runs(params: dict[str, Any]) -> list[tuple[str, int]]:
    """The (experiment, seed) runs of the study that params.yaml describes."""
    runs = [
        (f"fusion/{f}", int(s))
        for f in params.get("fusions") or []
        for s in params.get("seeds") or []
    ]
    runs += [  # the extended comparison (experiments/designs), on the same seeds
        (f"designs/{d}", int(s))
        for d in params.get("designs") or []
        for s in params.get("seeds") or []
    ]
    if "pretrain" in params:  # the backbone pretraining run (`study pretrain`)
        pretraining = pretrain_settings(params)
        runs.append((pretraining["experiment"], pretraining["seed"]))
    runs += [
        (f"table1/{r}", int(s))
        for r in params.get("table1") or []
        for s in params.get("table1_seeds") or []
    ]
    return runs


def configure(params_path: str = "params.yaml", out: Path = CONFIGS) -> list[Path]:
    """Resolve every run and write its two config files under ``out`` (written beside the old
    folder and swapped in whole, so a bad experiment file leaves the previous configs)."""
    params = load_params(params_path)
    new = out.with_name(f".{out.name}.new")
    shutil.rmtree(new, ignore_errors=True)
    written: list[Path] = []
    try:
        for name, seed in study_runs(params):
            cfg = resolve_run(name, seed, None, params_path)
            paths = paths_of(name, seed)
            for path, part in (
                (paths.train_config, training_config(cfg)),
                (paths.eval_config, evaluation_config(cfg)),
            ):
                write_part(new / path.relative_to(CONFIGS), part)
                written.append(out / path.relative_to(CONFIGS))
        new.mkdir(parents=True, exist_ok=True)
        swap_in(new, out)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return written
