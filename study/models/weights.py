"""The weights file a run delivers (``models/<experiment>/seed<k>.pt``, its snapshots, an
imported official checkpoint): what it holds, how it is read back, and the check that it fits
the dataset it is evaluated on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from study.errors import CheckpointError, StudyError
from study.models.zoo import build_model
from study.utils import torch_save

if TYPE_CHECKING:
    from study.data import CocoDetection


def save_weights(
    model: nn.Module,
    dataset: CocoDetection,
    cfg: dict,
    path: Path,
    extra: dict[str, Any] | None = None,
) -> None:
    """Final weights plus what is needed to rebuild and evaluate the model."""
    torch_save(
        {
            "model": model.state_dict(),
            "spec": getattr(model, "spec", {}),
            "config": cfg,
            "class_names": dataset.class_names,
            "label_to_cat_id": list(dataset.label_to_cat_id),
            **(extra or {}),
        },
        path,
    )


def load_weights(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a weights file written by ``study train`` or ``import-official``."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found (train the experiment first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise CheckpointError(f"{path}: cannot read weights: {exc}") from None
    if not isinstance(blob, dict) or "model" not in blob or "spec" not in blob:
        raise CheckpointError(f"{path}: not a study weights file (expected keys model, spec)")
    spec = dict(blob["spec"])
    name, num_classes = spec.pop("name"), spec.pop("num_classes")
    try:
        model = build_model(name, num_classes=num_classes, **spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model spec does not build a model ({exc})") from None
    state = blob["model"]
    what = mismatch(model.state_dict(), state) if isinstance(state, dict) else "not a state_dict"
    if what:
        raise CheckpointError(f"{path}: the weights do not fit their model spec ({what})")
    model.load_state_dict(state)
    return model.to(device).eval(), blob


def mismatch(ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """How the tensors ``theirs`` (a file's) fail to fit the model's ``ours``, naming the first
    tensor at fault and counting the others; None when every tensor fits."""
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing:
        return f"{len(missing)} tensor(s) missing from the file, e.g. {missing[0]}"
    if extra:
        return f"{len(extra)} tensor(s) the model does not have, e.g. {extra[0]}"
    shape = {k: tuple(getattr(v, "shape", ())) for k, v in theirs.items()}
    wrong = [k for k in ours if shape[k] != tuple(ours[k].shape)]
    if wrong:
        key = wrong[0]
        return (
            f"{len(wrong)} tensor(s) of another shape, e.g. {key}: {shape[key]} in the file, "
            f"{tuple(ours[key].shape)} in the model"
        )
    return None


def check_classes(blob: dict[str, Any], weights_path: Path, dataset: CocoDetection) -> None:
    """The weights must have been trained on the dataset's classes, in the same order: otherwise
    every detection would be scored under another class's name without a word."""
    num_classes = blob["spec"].get("num_classes")
    if num_classes != dataset.num_classes:
        raise StudyError(
            f"{weights_path}: the weights have {num_classes} classes, the dataset "
            f"{dataset.ann_file} has {dataset.num_classes}"
        )
    names = blob.get("class_names")
    if names is not None and list(names) != list(dataset.class_names):
        pairs = enumerate(zip(names, dataset.class_names, strict=True))
        i = next(i for i, (ours, theirs) in pairs if ours != theirs)
        raise StudyError(
            f"{weights_path}: trained on other classes than {dataset.ann_file} has (class "
            f"{i}: {names[i]!r} in the weights, {dataset.class_names[i]!r} in the dataset; "
            f"categories sorted by id). Evaluate on the dataset the weights were trained on, "
            "or one with the same category names and ids"
        )
