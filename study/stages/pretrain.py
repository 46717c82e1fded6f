"""``study pretrain``: train the backbone every fusion run starts from (params.yaml ``pretrain``).

The pretraining run is an ordinary run (``experiments/pretrain/backbone.yaml`` at
``pretrain.seed``, trained as ``study train`` trains, with its snapshots, logs and learning
curve); this stage then writes its backbone tensors alone to ``pretrain.out``, the file the
profile's ``model.backbone_weights`` names. Nothing of the neck, fusion or head carries over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from study.engine.run import train_run
from study.models.pretrained import save_backbone
from study.models.weights import load_weights
from study.resolved import config_hash, training_config
from study.runs import run_paths


def pretrain(cfg: dict[str, Any], out: Path, force: bool = False) -> Path:
    """Train the pretraining run ``cfg`` (unless complete) and write its backbone to ``out``."""
    train_run(cfg, force=force)
    paths = run_paths(cfg)
    model, blob = load_weights(paths.model, torch.device("cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_backbone(
        model,
        out,
        extra={
            "source": str(paths.model),
            "config_hash": config_hash(training_config(cfg)),
            "class_names": blob.get("class_names"),
        },
    )
    print(f"{out}: the backbone of {paths.model} ({cfg['name']} seed {cfg['train']['seed']})")
    return out
