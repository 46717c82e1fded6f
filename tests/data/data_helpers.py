"""Helpers shared by the data tests (importable because pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_image(path: Path, array_or_image: Any, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array_or_image
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, format=fmt)


def rgb(h: int, w: int, colour: tuple[int, int, int] = (90, 120, 150)) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:] = colour
    return arr


def category_list(n: int = 3) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"c{i}"} for i in (1, 2, 5)[:n]]


def coco_dict(
    images: list[dict[str, Any]],
    anns: list[dict[str, Any]],
    categories: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A COCO dict; annotations get ``id`` 1, 2, ..., ``iscrowd`` 0, ``category_id`` 1 and the
    box's ``area`` (0 if the bbox is not 4 numbers) unless given."""
    out_anns = []
    for i, a in enumerate(anns, 1):
        a = {"id": i, "iscrowd": 0, "category_id": 1, **a}
        box = a.get("bbox")
        four = isinstance(box, list) and len(box) == 4
        four = four and all(isinstance(v, (int, float)) for v in box)
        a.setdefault("area", box[2] * box[3] if four else 0.0)
        out_anns.append(a)
    return {
        "images": images,
        "annotations": out_anns,
        "categories": categories if categories is not None else category_list(),
    }
