"""A run's resolved configuration, split by what each part can change.

``study configure`` writes both parts of every run of the study to ``configs/<experiment>/
seed<k>/`` and DVC tracks those files instead of the experiment files and params.yaml, so a
setting retrains exactly the runs whose training part it changes:

- ``train.yaml``, :func:`training_config`: everything that can change the trained weights (the
  model, the training data, the recipe) and nothing that cannot: no evaluation, logging,
  progress or checkpoint cadence, device choice or image caching.
- ``eval.yaml``, :func:`evaluation_config`: what the evaluation of the weights reads (the
  validation data and ``eval``), with the run's name, profile and seed that its results record.

The weights and the training summary record :func:`config_hash` of the training part.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from study.utils import params_hash, write_text

# Keys that cannot change the trained weights: where a run writes, how often it logs or
# checkpoints, where it runs, whether decoded images are cached, the split it is validated on.
NOT_TRAINING = {
    "train": ("checkpoint_every", "log_every", "device"),
    "data": ("val_split", "cache_images"),
}
EVAL_DATA = ("root", "val_split", "max_images", "workers")


def training_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a merged config that can change the trained weights."""
    out = {"model": copy.deepcopy(cfg["model"])}
    for section, dropped in NOT_TRAINING.items():
        out[section] = {k: copy.deepcopy(v) for k, v in cfg[section].items() if k not in dropped}
    return out


def evaluation_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a merged config that the evaluation of a run's weights reads."""
    return {
        "name": cfg["name"],
        "profile": cfg.get("profile"),
        "data": {k: cfg["data"][k] for k in EVAL_DATA},
        "eval": copy.deepcopy(cfg["eval"]),
        "train": {"seed": cfg["train"]["seed"]},
    }


def config_hash(part: dict[str, Any]) -> str:
    """The hash the weights record of their training part (``config_hash(training_config(c))``)."""
    return params_hash(part)


def dump(part: dict[str, Any]) -> str:
    """The YAML text of a config part: sorted keys, so the same config is the same bytes."""
    return yaml.safe_dump(part, sort_keys=True, default_flow_style=None, width=100)


def write_part(path: str | os.PathLike[str], part: dict[str, Any]) -> None:
    """Write ``part`` to ``path`` in the canonical form that :func:`config_hash` hashes."""
    write_text(Path(path), dump(part))


def tracked_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Both parts in one config: what a stage reading ``train.yaml`` and ``eval.yaml`` sees."""
    train, ev = training_config(cfg), evaluation_config(cfg)
    return {
        **ev,
        "model": train["model"],
        "data": {**train["data"], **ev["data"]},
        "train": {**train["train"], **ev["train"]},
    }
