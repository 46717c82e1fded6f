"""The anchor-usage table: how many ground-truth boxes each of the nine anchors is assigned, per
split, at the training size. YOLOv3's rule assigns a box to the single anchor (of nine) whose
width and height overlap it best (IoU of the two boxes centred on each other), so an anchor that
no box picks trains nothing, and a level whose anchors few boxes pick barely learns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools.coco import COCO

from study.anchors import ANCHOR_MASKS, STRIDES, resolve_anchors, wh_iou
from study.data import load_coco


def box_sizes(coco: COCO, img_size: int) -> np.ndarray:
    """(N, 2) width and height of every non-crowd box of ``coco``, in input pixels after the
    square resize of each image to ``img_size``."""
    out = []
    for ann in coco.dataset.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        img = coco.imgs[ann["image_id"]]
        _, _, w, h = ann["bbox"]
        out.append((w * img_size / img["width"], h * img_size / img["height"]))
    return np.asarray(out, dtype=float).reshape(-1, 2)


def anchor_usage(
    sizes: dict[str, np.ndarray], anchors: str | Sequence[Sequence[float]]
) -> pd.DataFrame:
    """One row per anchor: its size, level (stride), and per split the boxes it is the best
    anchor for (count, share) and their mean IoU with it."""
    prior = np.asarray(resolve_anchors(anchors))
    level_of = {a: STRIDES[level] for level, mask in enumerate(ANCHOR_MASKS) for a in mask}
    rows = [
        {"anchor": f"{w:g}x{h:g}", "stride": level_of[i]} for i, (w, h) in enumerate(prior.tolist())
    ]
    for split, wh in sizes.items():
        if len(wh) == 0:
            continue
        ious = wh_iou(np.asarray(wh, dtype=float), prior)
        best, best_iou = ious.argmax(axis=1), ious.max(axis=1)
        for i, row in enumerate(rows):
            picked = best == i
            row[f"{split} boxes"] = int(picked.sum())
            row[f"{split} %"] = round(100 * picked.mean(), 1)
            row[f"{split} IoU"] = round(float(best_iou[picked].mean()), 2) if picked.any() else None
    return pd.DataFrame(rows)


def usage_report_data(train_ann: Path, val: COCO, img_size: int) -> dict[str, np.ndarray]:
    """The box sizes of the training annotations (read here) and of the validation ones (read
    already, by the report) at the training size."""
    return {"train": box_sizes(load_coco(train_ann), img_size), "val": box_sizes(val, img_size)}
