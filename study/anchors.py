"""The nine COCO anchors (w, h in input pixels), three per level, as named sets.

* ``yolov3``: YOLOv3's own k-means anchors (Redmon & Farhadi 2018, ``yolov3.cfg``; also DeNA's
  PyTorch port, which the official ASFF code descends from): sixth anchor (59, 119), last
  (373, 326).
* ``official``: the official ASFF code's set (``models/yolov3_head.py``): sixth anchor (42, 119)
  and last (121, 240). Its README says the released models were trained with it, so importing
  official weights uses this set.
* ``official-sep``: the official code's set for its ``sep`` (MobileNet) heads, (42, 119) and
  (373, 326); this study's ``yolov3`` set before it was corrected to YOLOv3's.
"""

from __future__ import annotations

from collections.abc import Sequence

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

ANCHOR_SETS = {
    "yolov3": YOLOV3_ANCHORS,
    "official": OFFICIAL_ANCHORS,
    "official-sep": OFFICIAL_SEP_ANCHORS,
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
