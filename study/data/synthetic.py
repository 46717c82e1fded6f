"""A built-in synthetic benchmark in the COCO layout that poses the ASFF problem.

Every image mixes small, medium and large objects (COCO's area thresholds, about COCO's 41/34/25
mix) on a cluttered background, and small objects sit on top of large ones, so one location is
an object at one pyramid level and background at another. Ten classes differ by shape or texture
only; colours are random and independent of the class. Unannotated distractors (lines, arcs,
scribbles, irregular blobs) are drawn under and over the objects.

The box of an object is the tight box of its drawn outline (amodal: occluders do not shrink it)
and its ``area`` is the box area, so COCOeval's small/medium/large buckets agree with the box
sizes. Each image is drawn from its own RNG seeded by ``(seed, split, index)``: the output is
byte-identical for a seed, and the val images do not depend on ``num_train``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from study.utils import atomic_path, write_json

CLASS_NAMES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "striped_square",
    "checkered_disc",
    "hexagon",
    "arrow",
)
SMALL_MAX, MEDIUM_MAX = 32**2, 96**2  # COCO area thresholds (pixels at the image size)
BUCKETS = ("small", "medium", "large")
# Areas are drawn log-uniformly in these ranges (kept clear of the thresholds).
AREA_RANGES = {"small": (10**2, 31**2), "medium": (33**2, 94**2), "large": (98**2, None)}
SPLITS = {"train2017": (0, 0), "val2017": (1, 1_000_000)}  # split -> (RNG stream, id offset)
MIN_IMG_SIZE = 160
_FILE_RE = re.compile(r"^\d{12}\.(png|jpg)$")


def _file_mode() -> int:
    """0666 minus the umask: atomic_path's temp files are 0600, outputs get normal modes."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _ellipse(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _regular(n: int, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    pts = _regular(2 * points)
    pts[1::2] *= inner
    return pts


_SQ = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
_A = 0.34  # half-width of the cross arms
_CROSS = np.array(
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
_ARROW = np.array(
    [[-1, -0.3], [0.2, -0.3], [0.2, -0.8], [1, 0], [0.2, 0.8], [0.2, 0.3], [-1, 0.3]], float
)
# class -> (list of (unit polygon, mask value: 255 adds, 0 cuts), texture)
SHAPES: dict[str, tuple[list[tuple[np.ndarray, int]], str | None]] = {
    "circle": ([(_ellipse(), 255)], None),
    "square": ([(_SQ, 255)], None),
    "triangle": ([(_regular(3), 255)], None),
    "cross": ([(_CROSS, 255)], None),
    "ring": ([(_ellipse(), 255), (_ellipse() * 0.55, 0)], None),
    "star": ([(_star(), 255)], None),
    "striped_square": ([(_SQ, 255)], "stripes"),
    "checkered_disc": ([(_ellipse(), 255)], "checker"),
    "hexagon": ([(_regular(6), 255)], None),
    "arrow": ([(_ARROW, 255)], None),
}


def size_bucket(area: float) -> str:
    """COCO's size bucket of an area in pixels."""
    return "small" if area < SMALL_MAX else "medium" if area < MEDIUM_MAX else "large"


class _Canvas:
    """One image being drawn: a uint8 array, its background gradient and the RNG."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ang = rng.uniform(0, 2 * np.pi)
        self.c0, self.c1, self.dir = (
            c0.astype(float),
            c1.astype(float),
            np.array([np.cos(ang), np.sin(ang)]),
        )
        g = np.linspace(-1, 1, size, dtype=np.float32)[:, None]
        diff = ((self.c1 - self.c0) * 0.5 / np.sqrt(2)).astype(np.float32)
        across = g * (diff * self.dir[0]).astype(np.float32)  # (W, 3)
        down = g * (diff * self.dir[1]).astype(np.float32) + (self.c0 + self.c1) / 2  # (H, 3)
        self.arr = (down[:, None, :] + across[None, :, :]).astype(np.uint8)

    def bg_colour(self, x: float, y: float) -> np.ndarray:
        gx, gy = 2 * x / self.size - 1, 2 * y / self.size - 1
        t = (gx * self.dir[0] + gy * self.dir[1]) / np.sqrt(2) * 0.5 + 0.5
        return self.c0 + (self.c1 - self.c0) * t

    def colour(self, x: float, y: float, min_dist: float = 90.0) -> np.ndarray:
        """A random colour that stands out from the background at (x, y)."""
        bg = self.bg_colour(x, y)
        for _ in range(10):
            c = self.rng.integers(0, 256, 3)
            if np.abs(c - bg).sum() >= min_dist:
                break
        return c.astype(np.uint8)

    def distractors(self, n: int, thin_only: bool = False) -> None:
        """Unannotated clutter: line segments, arcs, scribbles and irregular blobs."""
        rng, s = self.rng, self.size
        img = Image.fromarray(self.arr)
        draw = ImageDraw.Draw(img)
        for _ in range(n):
            kind = rng.integers(0, 2 if thin_only else 4)
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            width = int(rng.integers(1, 4))
            if kind == 0:
                p = rng.uniform(0, s, 4)
                draw.line([(p[0], p[1]), (p[2], p[3])], fill=col, width=width)
            elif kind == 1:
                c, r = rng.uniform(0, s, 2), rng.uniform(8, s / 3)
                a0 = rng.uniform(0, 360)
                draw.arc(
                    [c[0] - r, c[1] - r, c[0] + r, c[1] + r],
                    a0,
                    a0 + rng.uniform(40, 200),
                    fill=col,
                    width=width,
                )
            elif kind == 2:
                pts = np.cumsum(rng.normal(0, s / 12, (int(rng.integers(4, 9)), 2)), 0)
                pts += rng.uniform(0, s, 2)
                draw.line([tuple(p) for p in pts], fill=col, width=width, joint="curve")
            else:
                m = int(rng.integers(7, 13))
                ang = np.sort(rng.uniform(0, 2 * np.pi, m))
                rad = rng.uniform(5, 40) * rng.uniform(0.35, 1.0, m)
                c = rng.uniform(0, s, 2)
                pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
                draw.polygon([tuple(p) for p in pts], fill=col)
        self.arr = np.array(img)

    def draw_shape(
        self,
        cls: str,
        polys: list[tuple[np.ndarray, int]],
        colours: list[np.ndarray],
        angle: float,
        unit: float,
    ) -> None:
        """Rasterise polygons (absolute coordinates) into a mask and fill it with a texture."""
        outer = polys[0][0]
        x0, y0 = (max(0, int(math.floor(v))) for v in outer.min(0))
        x1, y1 = (min(self.size, int(math.ceil(v))) for v in outer.max(0))
        mask_img = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(mask_img)
        for pts, value in polys:
            draw.polygon([(x - x0 - 0.5, y - y0 - 0.5) for x, y in pts], fill=value)
        mask = np.asarray(mask_img) > 127
        region = self.arr[y0:y1, x0:x1]
        texture = SHAPES[cls][1]
        if texture is None:
            region[mask] = colours[0]
            return
        cx, cy = outer.mean(0)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        if texture == "stripes":
            pattern = np.floor(u / (0.4 * unit)).astype(int) % 2 == 0
        else:
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            cell = 0.5 * unit
            pattern = (np.floor(u / cell).astype(int) + np.floor(v / cell).astype(int)) % 2 == 0
        fill = np.where(pattern[..., None], colours[0], colours[1])
        region[mask] = fill[mask]


def _coverage(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Fraction of each box in ``others`` (n, 4 XYXY) covered by ``box``."""
    if not len(others):
        return np.zeros(0)
    iw = (np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])).clip(0)
    ih = (np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])).clip(0)
    return iw * ih / ((others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]))


def _object_counts(rng: np.random.Generator) -> dict[str, int]:
    """Per-image counts with means 2.46 / 2.04 / 1.5 (41 / 34 / 25 %), at least one of each."""
    return {
        "small": 1 + int(rng.poisson(1.46)),
        "medium": 1 + int(rng.poisson(1.04)),
        "large": 1 + int(rng.random() < 0.5),
    }


def draw_image(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image; returns (uint8 HxWx3, objects with label, bbox [x, y, w, h], polygon)."""
    canvas = _Canvas(size, rng)
    canvas.distractors(int(rng.integers(3, 7)))
    counts = _object_counts(rng)
    objects: list[dict[str, Any]] = []
    boxes = np.zeros((0, 4))
    covered = np.zeros(0)
    large_boxes: list[np.ndarray] = []
    for bucket in ("large", "medium", "small"):
        lo, hi = AREA_RANGES[bucket]
        hi = hi or (0.75 * size) ** 2
        for j in range(counts[bucket]):
            label = int(rng.integers(0, len(CLASS_NAMES)))
            cls = CLASS_NAMES[label]
            polys_unit = SHAPES[cls][0]
            angle = rng.uniform(0, 2 * np.pi)
            aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
            rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
            base = [(p * np.array([1.0, aspect])) @ rot for p, _ in polys_unit]
            bw, bh = np.ptp(base[0], 0)
            area = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            k = min(math.sqrt(area / (bw * bh)), (size - 2) / bw, (size - 2) / bh)
            w, h = bw * k, bh * k
            # Nesting: the first small object (and some others) go inside a large one.
            nest = (
                bucket != "large"
                and large_boxes
                and ((bucket == "small" and j == 0) or rng.random() < 0.3)
            )
            best, best_cov = None, np.inf
            for _ in range(30):
                if nest:
                    lb = large_boxes[int(rng.integers(0, len(large_boxes)))]
                    if lb[2] - lb[0] - 2 < w or lb[3] - lb[1] - 2 < h:
                        nest = False
                        continue
                    x = rng.uniform(lb[0] + 1, lb[2] - 1 - w)
                    y = rng.uniform(lb[1] + 1, lb[3] - 1 - h)
                else:
                    x, y = rng.uniform(1, size - 1 - w), rng.uniform(1, size - 1 - h)
                box = np.array([x, y, x + w, y + h])
                cov = _coverage(box, boxes)
                worst = max(cov.max(initial=0), (covered + cov).max(initial=0) - 0.2)
                if worst < best_cov:
                    best, best_cov = box, worst
                if worst <= 0.4:
                    break
            box = np.round(best, 2)
            covered = np.concatenate([covered + _coverage(box, boxes), [0.0]])
            boxes = np.vstack([boxes, box])
            if bucket == "large":
                large_boxes.append(box)
            offset = box[:2] - base[0].min(0) * k
            values = [value for _, value in polys_unit]
            polys = [(b * k + offset, v) for b, v in zip(base, values, strict=True)]
            centre = box[:2] + (box[2:] - box[:2]) / 2
            c1 = canvas.colour(*centre)
            c2 = c1
            while np.abs(c2.astype(int) - c1).sum() < 150:
                c2 = rng.integers(0, 256, 3).astype(np.uint8)
            canvas.draw_shape(cls, polys, [c1, c2], angle, k)
            bw_r, bh_r = round(box[2] - box[0], 2), round(box[3] - box[1], 2)
            objects.append(
                {
                    "label": label,
                    "bbox": [float(box[0]), float(box[1]), bw_r, bh_r],
                    "area": round(bw_r * bh_r, 2),
                    "polygon": [round(float(v), 2) for v in polys[0][0].reshape(-1)],
                }
            )
    canvas.distractors(int(rng.integers(2, 5)), thin_only=True)
    amp = int(rng.integers(5, 21))  # uniform sensor-like noise in [-amp, amp]
    noise = rng.integers(-amp, amp + 1, (size, size, 3), dtype=np.int16)
    arr = np.clip(canvas.arr.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return arr, objects


def _write_split(
    out_root: Path, split: str, num: int, size: int, seed: int, image_format: str
) -> dict[str, Any]:
    """Draw and write one split's images; return its COCO dict."""
    stream, id_offset = SPLITS[split]
    img_dir = out_root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    ext = "png" if image_format == "png" else "jpg"
    images, annotations = [], []
    names = set()
    mode = _file_mode()
    for i in range(num):
        rng = np.random.default_rng([seed, stream, i])
        arr, objects = draw_image(size, rng)
        img_id = id_offset + i + 1
        name = f"{img_id:012d}.{ext}"
        names.add(name)
        with atomic_path(img_dir / name) as tmp:
            if ext == "png":  # Huffman-only zlib: as small as level 6 on noisy images, faster
                Image.fromarray(arr).save(tmp, format="PNG", compress_level=1, compress_type=2)
            else:
                Image.fromarray(arr).save(tmp, format="JPEG", quality=95)
            os.chmod(tmp, mode)
        images.append({"id": img_id, "file_name": name, "width": size, "height": size})
        for obj in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": obj["label"] + 1,
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "iscrowd": 0,
                    "segmentation": [obj["polygon"]],
                }
            )
    for stale in img_dir.iterdir():  # images of an earlier, larger run
        if _FILE_RE.match(stale.name) and stale.name not in names:
            stale.unlink()
    return {
        "info": {
            "description": "asff-study synthetic shapes (study.data.synthetic)",
            "version": "1",
            "year": 2024,
            "contributor": "asff-study",
            "date_created": "1970-01-01",
            "seed": seed,
            "img_size": size,
        },
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASS_NAMES)
        ],
    }


def size_mix(annotations: list[dict[str, Any]]) -> dict[str, float]:
    """Fractions of small / medium / large boxes (by the ``area`` field)."""
    counts = dict.fromkeys(BUCKETS, 0)
    for a in annotations:
        counts[size_bucket(a["area"])] += 1
    total = max(1, len(annotations))
    return {b: round(counts[b] / total, 4) for b in BUCKETS}


def generate(
    out_root: str | os.PathLike[str],
    num_train: int,
    num_val: int,
    img_size: int = 256,
    seed: int = 0,
    image_format: str = "png",
) -> dict[str, Any]:
    """Write the benchmark in the COCO layout under ``out_root``; return (and save) its stats."""
    if img_size < MIN_IMG_SIZE:
        raise ValueError(f"img_size must be >= {MIN_IMG_SIZE} (large objects need >= 96 px)")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    out_root = Path(out_root)
    t0 = time.perf_counter()
    splits = {}
    for split, num in (("train2017", num_train), ("val2017", num_val)):
        d = _write_split(out_root, split, num, img_size, seed, image_format)
        with atomic_path(out_root / "annotations" / f"instances_{split}.json") as tmp:
            tmp.write_text(json.dumps(d, separators=(",", ":")))
            os.chmod(tmp, _file_mode())
        splits[split] = d
    seconds = time.perf_counter() - t0
    all_anns = [a for d in splits.values() for a in d["annotations"]]
    per_class = dict.fromkeys(CLASS_NAMES, 0)
    for a in all_anns:
        per_class[CLASS_NAMES[a["category_id"] - 1]] += 1
    n_images = num_train + num_val
    stats = {
        "params": {
            "num_train": num_train,
            "num_val": num_val,
            "img_size": img_size,
            "seed": seed,
            "image_format": image_format,
        },
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "images": {s: len(d["images"]) for s, d in splits.items()},
        "boxes": {s: len(d["annotations"]) for s, d in splits.items()},
        "boxes_per_image": round(len(all_anns) / max(1, n_images), 3),
        "size_mix": size_mix(all_anns),
        "size_mix_per_split": {s: size_mix(d["annotations"]) for s, d in splits.items()},
        "per_class": per_class,
        "seconds": round(seconds, 3),
        "images_per_s": round(n_images / max(seconds, 1e-9), 1),
    }
    write_json(out_root / "stats.json", stats)
    os.chmod(out_root / "stats.json", _file_mode())
    return stats


def main(argv: list[str] | None = None) -> None:
    """``python -m study.data.synthetic OUT --train N --val N``: generate and print the stats."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_root")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpg"), default="png")
    a = p.parse_args(argv)
    stats = generate(a.out_root, a.train, a.val, a.img_size, a.seed, a.format)
    mix = stats["size_mix"]
    print(
        f"wrote {a.train} train + {a.val} val images to {a.out_root} in {stats['seconds']} s "
        f"({stats['images_per_s']} images/s); size mix small {mix['small']:.1%}, "
        f"medium {mix['medium']:.1%}, large {mix['large']:.1%}"
    )


if __name__ == "__main__":
    main()
