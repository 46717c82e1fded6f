"""The nine anchors (w, h in input pixels), three per level, as named sets: protocol data that
the models, the training assignment and the report's anchor-usage table all read (so it sits
below them, importing nothing of the study).

* ``yolov3``: YOLOv3's own k-means anchors (Redmon & Farhadi 2018, ``yolov3.cfg``; also DeNA's
  PyTorch port, which the official ASFF code descends from): sixth anchor (59, 119), last
  (373, 326).
* ``official``: the official ASFF code's set (``models/yolov3_head.py``): sixth anchor (42, 119)
  and last (121, 240). Its README says the released models were trained with it, so importing
  official weights uses this set.
* ``official-sep``: the official code's set for its ``sep`` (MobileNet) heads, (42, 119) and
  (373, 326); this study's ``yolov3`` set before it was corrected to YOLOv3's.

Two sets fitted to the built-in benchmark's training boxes at the default profile's 128 px (the
boxes' width and height after the square resize; ``study.report.anchors.box_sizes``), compared
with ``yolov3`` in docs/default-profile.md:

* ``synthetic-fit``: :func:`fit_per_level`, k-means (1 - IoU) within each area tercile: mean
  best IoU 0.88, but the three anchors of a level are near-identical squares.
* ``synthetic-ratios``: one scale per level (the tercile's median side: 14.7, 30.3, 80.6 px)
  with aspect ratios 1:2, 1:1, 2:1 (RetinaNet's), so a level's anchors do not compete for the
  same (square) objects: nearly every box picks its level's 1:1 anchor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

YOLOV3_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (59, 119),
    (116, 90),
    (156, 198),
    (373, 326),
)
OFFICIAL_SEP_ANCHORS: tuple[tuple[int, int], ...] = (
    *YOLOV3_ANCHORS[:5],
    (42, 119),
    *YOLOV3_ANCHORS[6:],
)
OFFICIAL_ANCHORS: tuple[tuple[int, int], ...] = (*OFFICIAL_SEP_ANCHORS[:8], (121, 240))

SYNTHETIC_FIT_ANCHORS: tuple[tuple[float, float], ...] = (
    (12.3, 12.3),
    (14.8, 14.8),
    (18.0, 18.0),
    (22.2, 22.2),
    (30.2, 30.4),
    (37.9, 37.8),
    (44.6, 44.5),
    (82.4, 82.6),
    (91.8, 90.7),
)
SYNTHETIC_RATIOS_ANCHORS: tuple[tuple[float, float], ...] = (
    (10.4, 20.7),
    (14.7, 14.7),
    (20.7, 10.4),
    (21.4, 42.8),
    (30.3, 30.3),
    (42.8, 21.4),
    (57.0, 113.9),
    (80.6, 80.6),
    (113.9, 57.0),
)

ANCHOR_SETS = {
    "yolov3": YOLOV3_ANCHORS,
    "official": OFFICIAL_ANCHORS,
    "official-sep": OFFICIAL_SEP_ANCHORS,
    "synthetic-fit": SYNTHETIC_FIT_ANCHORS,
    "synthetic-ratios": SYNTHETIC_RATIOS_ANCHORS,
}

# Level order follows the official code: level 0 is stride 32 (largest anchors), level 2 stride 8.
STRIDES: tuple[int, int, int] = (32, 16, 8)
ANCHOR_MASKS: tuple[tuple[int, int, int], ...] = ((6, 7, 8), (3, 4, 5), (0, 1, 2))


def resolve_anchors(anchors: str | Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """Accept a named set or an explicit list of nine (w, h) pairs."""
    if isinstance(anchors, str):
        if anchors not in ANCHOR_SETS:
            raise ValueError(f"unknown anchor set {anchors!r}; known: {', '.join(ANCHOR_SETS)}")
        return tuple((float(w), float(h)) for w, h in ANCHOR_SETS[anchors])
    pairs = tuple((float(a[0]), float(a[1])) for a in anchors)
    if len(pairs) != 9:
        raise ValueError(f"expected 9 anchors (3 per level), got {len(pairs)}")
    return pairs


def wh_iou(wh: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, K) IoU of boxes (N, 2) and anchors (K, 2) centred on each other."""
    inter = np.minimum(wh[:, None, 0], centers[None, :, 0]) * np.minimum(
        wh[:, None, 1], centers[None, :, 1]
    )
    union = wh[:, None].prod(-1) + centers[None].prod(-1) - inter
    return inter / union


def kmeans_anchors(wh: np.ndarray, k: int, iters: int = 100, seed: int = 0) -> np.ndarray:
    """k anchors (w, h) by k-means with 1 - IoU as the distance (YOLOv2's fit), sorted by area."""
    rng = np.random.default_rng(seed)
    centers = wh[rng.choice(len(wh), size=k, replace=False)].astype(float)
    for _ in range(iters):
        assign = wh_iou(wh, centers).argmax(axis=1)
        new = np.array(
            [
                np.median(wh[assign == j], axis=0) if (assign == j).any() else centers[j]
                for j in range(k)
            ]
        )
        if np.allclose(new, centers):
            break
        centers = new
    return centers[np.argsort(centers.prod(axis=1))]


def fit_per_level(wh: np.ndarray, seed: int = 0) -> tuple[tuple[float, float], ...]:
    """Nine anchors fitted level by level: the boxes split into area terciles (small ones to
    stride 8, large ones to stride 32) and three k-means anchors fitted within each tercile, so
    that each level's anchors divide that level's objects among them by shape instead of
    competing with another level's anchors for the same objects."""
    if len(wh) < 9:
        raise ValueError(f"need at least 9 boxes to fit 9 anchors, got {len(wh)}")
    area = wh.prod(axis=1)
    cuts = np.quantile(area, [1 / 3, 2 / 3])
    groups = [wh[area <= cuts[0]], wh[(area > cuts[0]) & (area <= cuts[1])], wh[area > cuts[1]]]
    out = [kmeans_anchors(g, 3, seed=seed) for g in groups]
    return tuple((round(float(w), 1), round(float(h), 1)) for w, h in np.concatenate(out))


def best_anchors(wh: np.ndarray, anchors: str | Sequence[Sequence[float]]) -> np.ndarray:
    """(N,) the anchor (0..8) each box is assigned by YOLOv3's rule: the best IoU of the boxes
    centred on each other, the first index on ties (as the loss assigns, study/engine/loss.py)."""
    return wh_iou(np.asarray(wh, dtype=float), np.asarray(resolve_anchors(anchors))).argmax(axis=1)
