"""Generated COCO ground truth and detections, for the scorers' identity test and benchmark.

:func:`generated_ground_truth` writes a COCO-val2017-sized annotation dict (5,000 images, about
36,000 boxes over 80 categories, a few crowd regions); :func:`generated_detections` makes a
results list with ``per_image`` detections per image: jittered copies of the true boxes (some with
the wrong class) and random false positives, with random scores, rounded as COCO results files
are. Both are seeded, so a benchmark or test sees the same data every time.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO


def generated_ground_truth(
    num_images: int = 5000, boxes_per_image: float = 7.3, num_classes: int = 80, seed: int = 0
) -> dict[str, Any]:
    """A COCO annotation dict: 640 x 480 images, Poisson(``boxes_per_image``) boxes each of
    every size bucket, 1 % of them crowd regions."""
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": f"class{i + 1}"} for i in range(num_classes)]
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        w, h = 640, 480
        images.append(
            {"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h}
        )
        for _ in range(rng.poisson(boxes_per_image)):
            side = float(np.exp(rng.uniform(np.log(8), np.log(400))))
            bw = min(side * rng.uniform(0.5, 1.5), w - 1.0)
            bh = min(side * rng.uniform(0.5, 1.5), h - 1.0)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, num_classes + 1)),
                    "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                    "area": round(bw * bh, 2),
                    "iscrowd": int(rng.random() < 0.01),
                    "segmentation": [],
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}


def generated_detections(
    dataset: dict[str, Any], per_image: int = 100, seed: int = 0
) -> list[dict[str, Any]]:
    """``per_image`` detections for every image of the COCO dict ``dataset``: each true box
    once, jittered (10 % with another class), then false positives; scores uniform."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in dataset["categories"]]
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in dataset["images"]}
    for ann in dataset["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    sizes = {im["id"]: (im["width"], im["height"]) for im in dataset["images"]}
    results = []
    for image_id, anns in by_image.items():
        w, h = sizes[image_id]
        for k in range(per_image):
            if k < len(anns):
                x, y, bw, bh = anns[k]["bbox"]
                jitter = rng.normal(0.0, 0.08, 4) * [bw, bh, bw, bh]
                x, y, bw, bh = x + jitter[0], y + jitter[1], bw + jitter[2], bh + jitter[3]
                cat = anns[k]["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids))
            else:
                bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                cat = int(rng.choice(cat_ids))
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(cat),
                    "bbox": [round(float(v), 2) for v in (x, y, max(bw, 1.0), max(bh, 1.0))],
                    "score": round(float(rng.random()), 5),
                }
            )
    return results


def coco_from_dict(dataset: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` indexed from an annotation dict (no file, no printout)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
