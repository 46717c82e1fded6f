"""``study import-official``: an official ASFF checkpoint as this project's weights file."""

from __future__ import annotations

from pathlib import Path

from study.models import build_model
from study.models.official import load_official
from study.utils import torch_save


def import_official(
    checkpoint: Path,
    model_name: str,
    out: Path,
    num_classes: int = 80,
    backbone_only: bool = False,
    trust: bool = False,
) -> Path:
    """Load ``checkpoint`` into ``model_name`` (official anchors) and save it to ``out``."""
    model = build_model(model_name, num_classes=num_classes, anchors="official")
    load_official(model, checkpoint, model_name, backbone_only=backbone_only, trust=trust)
    torch_save(
        {
            "model": model.state_dict(),
            "spec": model.spec,
            "config": None,
            "source": str(checkpoint),
        },
        out,
    )
    return out
