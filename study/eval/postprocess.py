"""Detections from decoded predictions: the official ASFF post-processing, batched.

The official code (``utils/utils.py: postprocess``) scores each box by objectness x the largest
class probability, gives it that one class, keeps scores >= the confidence threshold (0.001 at
evaluation) and runs NMS separately per class (IoU 0.65). This module does the same with
``torchvision.ops.batched_nms``. ``max_dets`` (None: off, the official behaviour) keeps only the
best N boxes per image. That is not neutral: COCOeval keeps the best 100 per image *and
category*, so a per-image cap removes boxes it would have scored and lowers AP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre/size boxes -> corner boxes."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def _scored(pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(boxes (B, N, 4) XYXY, scores (B, N), labels (B, N)) of decoded predictions: each box
    scored by objectness x its largest class probability and given that class (float32)."""
    if pred.dim() != 3 or pred.shape[-1] < 6:
        raise ValueError(f"expected predictions of shape (B, N, 5 + C), got {tuple(pred.shape)}")
    pred = pred.detach().float()
    class_conf, labels = pred[..., 5:].max(dim=-1)  # one label per box
    return cxcywh_to_xyxy(pred[..., :4]), pred[..., 4] * class_conf, labels


def _kept(boxes: Tensor, scores: Tensor, conf_thresh: float) -> Tensor:
    """Boxes at or above the confidence threshold with finite values."""
    return (scores >= conf_thresh) & torch.isfinite(scores) & torch.isfinite(boxes).all(-1)


def num_candidates(pred: Tensor, conf_thresh: float = 0.001) -> Tensor:
    """(B,) how many boxes of each image reach NMS (scored and thresholded as in
    :func:`postprocess`)."""
    boxes, scores, _ = _scored(pred)
    return _kept(boxes, scores, conf_thresh).sum(-1)


def class_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    nms_thresh: float,
    image: Tensor | None = None,
    num_classes: int = 0,
) -> Tensor:
    """Indices of the boxes NMS keeps, by decreasing score. Boxes suppress each other only
    within a class, and, with ``image`` (each box's image in a flattened batch of
    ``num_classes``-class predictions), only within an image: each (image, class) pair is
    one group of ``torchvision.ops.batched_nms``."""
    groups = labels if image is None else image * num_classes + labels
    return batched_nms(boxes, scores, groups, nms_thresh)


def nms_settings(cfg_eval: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`postprocess` / :func:`postprocess_batched` that an
    ``eval:`` config section sets (``conf_thresh``, ``nms_thresh``, ``max_dets``)."""
    return {
        "conf_thresh": float(cfg_eval["conf_thresh"]),
        "nms_thresh": float(cfg_eval["nms_thresh"]),
        "max_dets": cfg_eval.get("max_dets"),
    }


def _detections(
    boxes: Tensor, scores: Tensor, labels: Tensor, idx: Tensor, max_dets: int | None
) -> dict[str, Tensor]:
    """One image's detections: the boxes at ``idx`` (by decreasing score), the best
    ``max_dets`` of them when it is set (> 0)."""
    if max_dets is not None and max_dets > 0:
        idx = idx[:max_dets]
    return {"boxes": boxes[idx], "scores": scores[idx], "labels": labels[idx].long()}


def postprocess(
    pred: Tensor,
    conf_thresh: float = 0.001,
    nms_thresh: float = 0.65,
    max_dets: int | None = None,
) -> list[dict[str, Tensor]]:
    """Turn decoded predictions into per-image detections.

    ``pred`` is ``(B, N, 5 + C)``: cx, cy, w, h in input pixels, objectness and class
    probabilities (already sigmoid), as ``Detector.decode`` returns them. Returns one dict per
    image with ``boxes`` (k, 4) XYXY input pixels, ``scores`` (k,) and ``labels`` (k,) int64,
    sorted by decreasing score, on ``pred``'s device. Half-precision input is computed in float32.
    ``max_dets`` None or <= 0 keeps every box that survives NMS (the official behaviour).
    """
    out: list[dict[str, Tensor]] = []
    for boxes, scores, labels in zip(*_scored(pred), strict=True):
        keep = _kept(boxes, scores, conf_thresh)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        idx = class_nms(boxes, scores, labels, nms_thresh)
        out.append(_detections(boxes, scores, labels, idx, max_dets))
    return out


def postprocess_batched(
    pred: Tensor,
    conf_thresh: float = 0.001,
    nms_thresh: float = 0.65,
    max_dets: int | None = None,
) -> list[dict[str, Tensor]]:
    """:func:`postprocess` with one NMS call for the whole batch (the fast path on a GPU).

    Boxes of different images never suppress each other: each (image, class) pair is its own
    NMS group. Returns the same detections as :func:`postprocess` (tested), but the
    per-image loop does only indexing, so a GPU runs a single NMS kernel per batch.
    """
    boxes, scores, labels = _scored(pred)
    batch, num_boxes, num_classes = pred.shape[0], pred.shape[1], pred.shape[-1] - 5
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    image = torch.arange(batch, device=pred.device).repeat_interleave(num_boxes)
    keep = _kept(boxes, scores, conf_thresh)
    boxes, scores, labels, image = boxes[keep], scores[keep], labels[keep], image[keep]
    idx = class_nms(boxes, scores, labels, nms_thresh, image, num_classes)
    image_of = image[idx]
    order = torch.sort(image_of, stable=True).indices  # group by image, keep the score order
    idx, image_of = idx[order], image_of[order]
    counts = torch.bincount(image_of, minlength=batch).tolist()
    return [_detections(boxes, scores, labels, part, max_dets) for part in idx.split(counts)]


def _pair(value: Any, name: str) -> tuple[float, float]:
    """A scalar or an (x, y) pair (a 4-sequence is read as left, top, right, bottom)."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if isinstance(value, Sequence) and len(value) in (2, 4):
        return float(value[0]), float(value[1])
    raise ValueError(f"info[{name!r}] must be a number or an (x, y) pair, got {value!r}")


def to_original(boxes: Tensor, info: Mapping[str, Any]) -> Tensor:
    """Map XYXY boxes in input pixels back to the original image: ``(box - pad) / scale``.

    ``info`` is the per-image dict of the eval transform (see docs/design.md): ``orig_size``
    (H, W), ``scale`` (a number, or (sx, sy) for the official square resize, which scales the
    axes differently) and ``pad`` (a number or (px, py), the left/top letterbox padding; 0 when
    absent). Pairs are in (x, y) order. The result is clipped to the original image.
    """
    sx, sy = _pair(info["scale"], "scale")
    px, py = _pair(info.get("pad", 0.0), "pad")
    orig = info["orig_size"]
    if isinstance(orig, Tensor):
        orig = orig.tolist()
    h, w = float(orig[0]), float(orig[1])
    boxes = boxes.float()
    pad = boxes.new_tensor([px, py, px, py])
    scale = boxes.new_tensor([sx, sy, sx, sy])
    out = (boxes - pad) / scale
    out[..., 0::2] = out[..., 0::2].clamp(0.0, w)
    out[..., 1::2] = out[..., 1::2].clamp(0.0, h)
    return out
