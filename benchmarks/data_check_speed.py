"""Speed of ``study data check`` on a COCO-val2017-sized dataset (5,000 images, 36,000 boxes).

Writes the generated ground truth (study.eval.generated, scaled to 64 x 48 images) and 5,000 small
JPEGs into a temporary folder, then times the check with and without the image pass (image
headers only) and ``load_coco`` (the same checks, raised, plus pycocotools' index). The image
files were just written, so they are in the page cache: a cold disk is slower.

Usage: python benchmarks/data_check_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from study.data import load_coco, run_data_check
from study.eval.generated import generated_ground_truth

NUM_IMAGES, NUM_ANNOTATIONS = 5000, 36_000
WIDTH, HEIGHT = 64, 48
SCALE = WIDTH / 640  # generated_ground_truth's images are 640 x 480


def write_dataset(root: Path) -> dict[str, Any]:
    """The val2017 split under ``root``: annotation file and one small JPEG per image."""
    d = generated_ground_truth(num_images=NUM_IMAGES)
    d["annotations"] = d["annotations"][:NUM_ANNOTATIONS]
    for img in d["images"]:
        img["width"], img["height"] = WIDTH, HEIGHT
    for ann in d["annotations"]:
        ann["bbox"] = [round(v * SCALE, 2) for v in ann["bbox"]]
        ann["area"] = round(ann["area"] * SCALE**2, 2)
    ann_file = root / "annotations" / "instances_val2017.json"
    ann_file.parent.mkdir(parents=True)
    ann_file.write_text(json.dumps(d))
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    img_dir = root / "val2017"
    img_dir.mkdir()
    for img in d["images"]:
        (img_dir / img["file_name"]).write_bytes(buf.getvalue())
    return d


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "coco"
        t0 = time.perf_counter()
        d = write_dataset(root)
        print(
            f"wrote {len(d['images']):,} images ({WIDTH}x{HEIGHT} JPEG), "
            f"{len(d['annotations']):,} annotations, {len(d['categories'])} categories "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        ann_file = root / "annotations" / "instances_val2017.json"
        runs = [
            ("data check, annotations only", lambda: run_data_check(root, images=False)),
            ("data check, with image headers", lambda: run_data_check(root)),
            ("load_coco (checks + pycocotools index)", lambda: load_coco(ann_file)),
        ]
        for name, fn in runs:
            seconds, out = best_of(args.repeats, fn)
            ok = f", ok={out[1]}" if isinstance(out, tuple) else ""
            print(f"{name:<40} {seconds:6.2f} s (best of {args.repeats}){ok}")
        print(run_data_check(root)[0])


if __name__ == "__main__":
    main()
