"""The built-in benchmark, written in the COCO layout, that poses the problem ASFF addresses.

Every image mixes small, medium and large objects (COCO's area thresholds), and small objects
sit on large ones, so one location is an object at one pyramid level and background at another.
Classes differ by shape (colours are random and independent of the class).

Versions (``synthetic.version`` in params.yaml), each a module with ``CLASS_NAMES``,
``MIN_IMG_SIZE`` and ``draw_image(size, rng)``:

- ``2`` (default, ``v2.py``): five classes, thin-line distractors only, occlusion bounded at 15 %,
  5.3 objects per image (45/36/19 % small/medium/large); learnable by a CPU-sized model in minutes;
- ``1`` (``v1.py``): ten classes, filled-blob distractors, up to 40 % occlusion, heavier noise,
  COCO's 41/34/25 % mix.

Each image is drawn from its own RNG seeded by ``(seed, split, index)``: the output is
byte-identical for a (version, seed), and the val images do not depend on ``num_train``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from study.data.synthetic import v1, v2
from study.data.synthetic.common import BUCKETS, size_bucket
from study.utils import atomic_path, write_json

VERSIONS: dict[int, ModuleType] = {1: v1, 2: v2}
DEFAULT_VERSION = 2
CLASS_NAMES = VERSIONS[DEFAULT_VERSION].CLASS_NAMES
MIN_IMG_SIZE = max(m.MIN_IMG_SIZE for m in VERSIONS.values())
SPLITS = {"train2017": (0, 0), "val2017": (1, 1_000_000)}  # split -> (RNG stream, id offset)
_FILE_RE = re.compile(r"^\d{12}\.(png|jpg)$")

__all__ = [
    "BUCKETS",
    "CLASS_NAMES",
    "DEFAULT_VERSION",
    "MIN_IMG_SIZE",
    "VERSIONS",
    "class_names",
    "generate",
    "size_bucket",
    "size_mix",
]


def version_module(version: int) -> ModuleType:
    if version not in VERSIONS:
        known = ", ".join(map(str, sorted(VERSIONS)))
        raise ValueError(f"unknown synthetic benchmark version {version!r}; known: {known}")
    return VERSIONS[version]


def class_names(version: int = DEFAULT_VERSION) -> tuple[str, ...]:
    """The category names of a benchmark version (category id = index + 1)."""
    return tuple(version_module(version).CLASS_NAMES)


def _file_mode() -> int:
    """0666 minus the umask: atomic_path's temp files are 0600, outputs get normal modes."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _write_split(
    out_root: Path, split: str, num: int, size: int, seed: int, image_format: str, version: int
) -> dict[str, Any]:
    """Draw and write one split's images; return its COCO dict."""
    module = version_module(version)
    stream, id_offset = SPLITS[split]
    img_dir = out_root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    ext = "png" if image_format == "png" else "jpg"
    images, annotations = [], []
    names = set()
    mode = _file_mode()
    for i in range(num):
        rng = np.random.default_rng([seed, stream, i])
        arr, objects = module.draw_image(size, rng)
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
            "version": str(version),
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
            {"id": k + 1, "name": n, "supercategory": "shape"}
            for k, n in enumerate(module.CLASS_NAMES)
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
    img_size: int = 160,
    seed: int = 0,
    image_format: str = "png",
    version: int = DEFAULT_VERSION,
) -> dict[str, Any]:
    """Write the benchmark in the COCO layout under ``out_root``; save its stats (stats.json) and
    return them with the generation time."""
    module = version_module(version)
    if img_size < module.MIN_IMG_SIZE:
        raise ValueError(f"img_size must be >= {module.MIN_IMG_SIZE} (large objects need >= 96 px)")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    out_root = Path(out_root)
    t0 = time.perf_counter()
    splits = {}
    for split, num in (("train2017", num_train), ("val2017", num_val)):
        d = _write_split(out_root, split, num, img_size, seed, image_format, version)
        with atomic_path(out_root / "annotations" / f"instances_{split}.json") as tmp:
            tmp.write_text(json.dumps(d, separators=(",", ":")))
            os.chmod(tmp, _file_mode())
        splits[split] = d
    seconds = time.perf_counter() - t0
    all_anns = [a for d in splits.values() for a in d["annotations"]]
    per_class = dict.fromkeys(module.CLASS_NAMES, 0)
    for a in all_anns:
        per_class[module.CLASS_NAMES[a["category_id"] - 1]] += 1
    n_images = num_train + num_val
    stats = {
        "params": {
            "num_train": num_train,
            "num_val": num_val,
            "img_size": img_size,
            "seed": seed,
            "image_format": image_format,
            "version": version,
        },
        "num_classes": len(module.CLASS_NAMES),
        "class_names": list(module.CLASS_NAMES),
        "images": {s: len(d["images"]) for s, d in splits.items()},
        "boxes": {s: len(d["annotations"]) for s, d in splits.items()},
        "boxes_per_image": round(len(all_anns) / max(1, n_images), 3),
        "size_mix": size_mix(all_anns),
        "size_mix_per_split": {s: size_mix(d["annotations"]) for s, d in splits.items()},
        "per_class": per_class,
    }
    # stats.json holds only what the images and annotations are, never how long they took: the
    # same params write the same bytes, so DVC sees a regenerated dataset as unchanged.
    write_json(out_root / "stats.json", stats)
    os.chmod(out_root / "stats.json", _file_mode())
    return {
        **stats,
        "seconds": round(seconds, 3),
        "images_per_s": round(n_images / max(seconds, 1e-9), 1),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m study.data.synthetic OUT --train N --val N``: generate and print the stats."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_root")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--img-size", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpg"), default="png")
    p.add_argument("--version", type=int, choices=sorted(VERSIONS), default=DEFAULT_VERSION)
    a = p.parse_args(argv)
    stats = generate(a.out_root, a.train, a.val, a.img_size, a.seed, a.format, a.version)
    mix = stats["size_mix"]
    print(
        f"wrote {a.train} train + {a.val} val images (version {a.version}) to {a.out_root} in "
        f"{stats['seconds']} s ({stats['images_per_s']} images/s); size mix small "
        f"{mix['small']:.1%}, medium {mix['medium']:.1%}, large {mix['large']:.1%}"
    )
