"""Pretrained backbone weights: the file ``study pretrain`` writes (the backbone's tensors
alone) and the loader of ``model.backbone_weights``, which also takes an official checkpoint's
Darknet-53 part (``darknet53_feature_mx.pth``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from study.errors import CheckpointError
from study.models.official import load_official
from study.models.weights import mismatch
from study.utils import torch_save

# A backbone file's "kind": only the backbone's tensors, so nothing of a neck, fusion or head
# carries over to the runs that start from it.
BACKBONE_KIND = "study-backbone"


def save_backbone(model: nn.Module, path: Path, extra: dict[str, Any] | None = None) -> None:
    """The backbone part of ``model`` (``model.backbone``), with the spec it was built with."""
    torch_save(
        {
            "kind": BACKBONE_KIND,
            "backbone": model.backbone.state_dict(),
            "spec": getattr(model, "spec", {}),
            **(extra or {}),
        },
        path,
    )


def load_backbone(model: nn.Module, path: str | Path, model_name: str) -> dict[str, Any]:
    """Load pretrained backbone weights into ``model``: a study backbone file (``study pretrain``)
    or an official checkpoint (its Darknet-53 part, e.g. ``darknet53_feature_mx.pth``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights not found (model.backbone_weights)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - not a torch pickle: the official reader says why
        blob = None
    if not (isinstance(blob, dict) and blob.get("kind") == BACKBONE_KIND):
        return load_official(model, path, model_name, backbone_only=True)
    theirs = blob["backbone"]
    what = mismatch(model.backbone.state_dict(), theirs)
    if what:
        raise CheckpointError(
            f"{path}: the backbone does not fit this model ({what}); the file was built with "
            f"{blob.get('spec', {})}"
        )
    model.backbone.load_state_dict(theirs)
    return {"source": str(path), "kind": BACKBONE_KIND, "tensors": len(theirs)}
