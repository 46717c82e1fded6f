"""Tiny COCO-layout fixtures and a fake detector, independent of study.data / study.models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

# Category ids are not contiguous on purpose: label 0 -> cat 1 (person), label 1 -> cat 3 (car).
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
IMAGES = [
    {"id": 1, "file_name": "000001.jpg", "width": 640, "height": 480},
    {"id": 2, "file_name": "000002.jpg", "width": 320, "height": 320},
    {"id": 3, "file_name": "000003.jpg", "width": 200, "height": 100},
]
# (id, image_id, category_id, bbox xywh, iscrowd). Areas: medium is 32^2..96^2, large above;
# no small (< 32^2) object at all, so COCOeval's APs bucket is empty (-1).
ANNOTATIONS = [
    (1, 1, 1, [100.0, 100.0, 200.0, 150.0], 0),  # large person
    (2, 1, 3, [10.0, 10.0, 50.0, 60.0], 0),  # medium car
    (3, 1, 1, [300.0, 300.0, 100.0, 100.0], 1),  # crowd region
    (4, 2, 3, [50.0, 50.0, 120.0, 100.0], 0),  # large car
    (5, 3, 1, [20.0, 20.0, 60.0, 50.0], 0),  # medium person
]
EVAL_SIZE = 64


def write_coco(root: Path, split: str = "val2017") -> Path:
    """Write ``root/annotations/instances_<split>.json``; return its path."""
    anns = [
        {
            "id": i,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "iscrowd": crowd,
            "area": box[2] * box[3],
            "segmentation": [],
        }
        for i, img, cat, box, crowd in ANNOTATIONS
    ]
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": IMAGES, "annotations": anns, "categories": CATEGORIES}))
    return path


def perfect_results() -> list[dict[str, Any]]:
    """One detection per non-crowd annotation, exactly on it."""
    return [
        {"image_id": img, "category_id": cat, "bbox": list(box), "score": 0.9}
        for _, img, cat, box, crowd in ANNOTATIONS
        if not crowd
    ]


def eval_info(image: dict[str, Any]) -> dict[str, Any]:
    """Square resize (per-axis scale) for images 1 and 3, letterbox for image 2 (with padding)."""
    w, h = image["width"], image["height"]
    if image["id"] == 2:
        s = EVAL_SIZE / max(w, h) * 0.75  # scaled down and centred: a non-zero pad on both axes
        pad = ((EVAL_SIZE - w * s) / 2, (EVAL_SIZE - h * s) / 2)
        return {"image_id": image["id"], "orig_size": (h, w), "scale": s, "pad": pad}
    return {
        "image_id": image["id"],
        "orig_size": (h, w),
        "scale": (EVAL_SIZE / w, EVAL_SIZE / h),
        "pad": (0.0, 0.0),
    }


class FakeDataset(torch.utils.data.Dataset):
    """Images whose first pixel carries the image's index, so FakeDetector can answer per image."""

    def __init__(self, root: Path, split: str = "val2017") -> None:
        self.root, self.split = root, split
        self.label_to_cat_id = {0: 1, 1: 3}

    def __len__(self) -> int:
        return len(IMAGES)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image = torch.zeros(3, EVAL_SIZE, EVAL_SIZE)
        image[0, 0, 0] = float(i)
        return image, {"info": eval_info(IMAGES[i])}


def fake_collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class FakeDetector(nn.Module):
    """Predicts every ground-truth box of the image (in input pixels) plus junk rows.

    Per image: each non-crowd box with objectness 0.9 and its class at 0.95; a duplicate of it
    shifted by 1 px with a lower score (NMS must remove it); and rows below the threshold.
    """

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.weight

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        rows_per_image = []
        cat_to_label = {1: 0, 3: 1}
        for image in outputs:
            meta = IMAGES[int(image[0, 0, 0].item())]
            info = eval_info(meta)
            sx, sy = info["scale"] if isinstance(info["scale"], tuple) else (info["scale"],) * 2
            px, py = info["pad"]
            rows = []
            for _, img, cat, (x, y, w, h), crowd in ANNOTATIONS:
                if img != meta["id"] or crowd:
                    continue
                cls = [0.0, 0.0]
                cls[cat_to_label[cat]] = 0.95
                cx, cy = (x + w / 2) * sx + px, (y + h / 2) * sy + py
                rows.append([cx, cy, w * sx, h * sy, 0.9, *cls])
                rows.append([cx + 1.0, cy, w * sx, h * sy, 0.5, *cls])  # duplicate
            while len(rows) < 6:
                rows.append([10.0, 10.0, 5.0, 5.0, 0.01, 0.05, 0.0])  # score 5e-4 < 0.001
            rows_per_image.append(torch.tensor(rows))
        return torch.stack(rows_per_image).to(outputs.device)


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    write_coco(tmp_path)
    return tmp_path


@pytest.fixture
def coco_gt(coco_root: Path):
    from pycocotools.coco import COCO

    return COCO(str(coco_root / "annotations" / "instances_val2017.json"))


@pytest.fixture
def perfect() -> list[dict[str, Any]]:
    return perfect_results()


@pytest.fixture
def fake_dataset(coco_root: Path) -> FakeDataset:
    return FakeDataset(coco_root)


@pytest.fixture
def fake_model() -> FakeDetector:
    return FakeDetector()


@pytest.fixture
def collate():
    return fake_collate


@pytest.fixture
def eval_size() -> int:
    return EVAL_SIZE
