"""What every version of the built-in benchmark shares: size buckets, unit shapes, overlap."""

from __future__ import annotations

from typing import Any

import numpy as np

SMALL_MAX, MEDIUM_MAX = 32**2, 96**2  # COCO area thresholds (pixels at the image size)
BUCKETS = ("small", "medium", "large")


def object_record(label: int, box: np.ndarray, outline: np.ndarray) -> dict[str, Any]:
    """One drawn object as the generator records it: its label, its box (x, y, w, h rounded to
    0.01 px), the box area and the outline's first polygon (the segmentation)."""
    bw, bh = round(box[2] - box[0], 2), round(box[3] - box[1], 2)
    return {
        "label": label,
        "bbox": [float(box[0]), float(box[1]), bw, bh],
        "area": round(bw * bh, 2),
        "polygon": [round(float(v), 2) for v in outline.reshape(-1)],
    }


def size_bucket(area: float) -> str:
    """COCO's size bucket of an area in pixels."""
    return "small" if area < SMALL_MAX else "medium" if area < MEDIUM_MAX else "large"


def ellipse(n: int = 48) -> np.ndarray:
    """Unit circle as an ``n``-gon, (n, 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def regular(n: int, phase: float = -np.pi / 2) -> np.ndarray:
    """Regular ``n``-gon inscribed in the unit circle, first vertex at ``phase``."""
    t = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    pts = regular(2 * points)
    pts[1::2] *= inner
    return pts


SQUARE = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
_A = 0.34  # half-width of the cross arms
CROSS = np.array(
    [
        [-_A, -1],
        [_A, -1],
        [_A, -_A],
        [1, -_A],
        [1, _A],
        [_A, _A],
        [_A, 1],
        [-_A, 1],
        [-_A, _A],
        [-1, _A],
        [-1, -_A],
        [-_A, -_A],
    ],
    float,
)
ARROW = np.array(
    [[-1, -0.3], [0.2, -0.3], [0.2, -0.8], [1, 0], [0.2, 0.8], [0.2, 0.3], [-1, 0.3]], float
)


def random_box(
    rng: np.random.Generator, w: float, h: float, size: int, inside: np.ndarray | None = None
) -> np.ndarray:
    """A ``w`` x ``h`` box (x1, y1, x2, y2) at a uniform position 1 px inside ``inside`` (a box)
    or inside the image (``size`` square); draws x, then y."""
    x0, y0, x1, y1 = (0, 0, size, size) if inside is None else inside
    x = rng.uniform(x0 + 1, x1 - 1 - w)
    y = rng.uniform(y0 + 1, y1 - 1 - h)
    return np.array([x, y, x + w, y + h])


def coverage(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Fraction of each box in ``others`` (n, 4 XYXY) covered by ``box``."""
    if not len(others):
        return np.zeros(0)
    iw = (np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])).clip(0)
    ih = (np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])).clip(0)
    return iw * ih / ((others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]))
