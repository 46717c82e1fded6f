"""The paper's nine COCO anchors (w, h in input pixels), three per level."""

from __future__ import annotations

from collections.abc import Sequence

YOLOV3_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (42, 119),
    (116, 90),
    (156, 198),
    (373, 326),
)
# The official ASFF code's last anchor is (121, 240); its README says the released Darknet
# models were trained with it, so importing official weights uses this set.
OFFICIAL_ANCHORS: tuple[tuple[int, int], ...] = (*YOLOV3_ANCHORS[:8], (121, 240))

ANCHOR_SETS = {"yolov3": YOLOV3_ANCHORS, "official": OFFICIAL_ANCHORS}

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
