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
    out_anns = []
    for i, a in enumerate(anns, 1):
        a = {"id": i, "iscrowd": 0, "category_id": 1, **a}
        if len(a["bbox"]) == 4:
            a.setdefault("area", a["bbox"][2] * a["bbox"][3])
        out_anns.append(a)
    return {
        "images": images,
        "annotations": out_anns,
        "categories": categories if categories is not None else category_list(),
    }
