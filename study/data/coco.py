"""A COCO-layout detection dataset with clear errors for bad input.

``root/annotations/instances_<split>.json`` plus images in ``root/<split>/``. Category ids are
sorted and mapped to contiguous labels ``0..C-1``; crowd boxes are left out of the training
targets (COCOeval still sees them through :func:`coco_api`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors

from study.choices import DROPPED_GT
from study.data.check import (
    IMAGE_READ_ERRORS,
    IMAGE_TOO_LARGE,
    annotation_file,
    check_annotations,
    clip_boxes,
    error_message,
    errors_in,
    read_annotation_file,
    too_large_error,
)
from study.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Sample = tuple[tv_tensors.Image, dict[str, Any]]
CACHE_LIMIT_BYTES = 8 * 2**30  # decoded images kept in memory by ``cache_images`` at most


def validate_dataset(d: Any, ann_file: Path) -> None:
    """Raise DataError listing every error of the COCO dict ``d`` (warnings are not raised).

    The checks are :func:`study.data.check.check_annotations`, the same ``study data check``
    reports."""
    errors = errors_in(check_annotations(d))
    if errors:
        raise DataError(error_message(ann_file, errors))


def load_coco(ann_file: str | os.PathLike[str]) -> COCO:
    """Load and validate a COCO annotation file into a pycocotools ``COCO`` (all annotations)."""
    ann_file = Path(ann_file)
    d = read_annotation_file(ann_file)
    validate_dataset(d, ann_file)
    d.setdefault("info", {})
    d.setdefault("licenses", [])
    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_api(root: str | os.PathLike[str], split: str) -> COCO:
    """The ``COCO`` object of a split with every annotation (crowd included), for COCOeval."""
    return load_coco(annotation_file(root, split))


def load_rgb(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3); DataError naming the file if missing, corrupt or
    over PIL's decompression-bomb limit (its warning too, not only its error)."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return _to_rgb(im)
    except IMAGE_TOO_LARGE as exc:
        raise too_large_error(path, exc) from None
    except IMAGE_READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.float64)
        if arr.max(initial=0) > 255:  # 16-bit data: scale to 8 bits
            arr = arr / 257.0
        gray = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return np.array(im.convert("RGB"))


class CocoDetection(Dataset):
    """Detection samples ``(image, target)`` from a dataset in the COCO layout."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        transforms: Callable[[Any, Any], Any] | None = None,
        max_images: int | None = None,
        cache_images: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.img_dir = self.root / split
        self.ann_file = annotation_file(root, split)
        self.transforms = transforms
        self.coco = load_coco(self.ann_file)

        self.cat_ids: list[int] = sorted(self.coco.cats)
        self.label_to_cat_id: list[int] = list(self.cat_ids)
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}
        self.class_names: list[str] = [str(self.coco.cats[c].get("name", c)) for c in self.cat_ids]
        self.num_classes = len(self.cat_ids)

        ids = sorted(self.coco.imgs)
        if not ids:
            raise DataError(f"{self.ann_file}: split {split!r} has no images")
        if max_images is not None:
            if max_images < 1:
                raise DataError(f"{self.ann_file}: max_images must be >= 1, got {max_images}")
            ids = ids[:max_images]
        self.ids: list[int] = ids
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Non-crowd ground truth left out of the targets (non-positive size, or outside the
        # image): training never sees them, so the evaluation must not count them as misses.
        self.dropped_ann_ids: list[int] = []
        self.box_stats = {
            "total": 0,
            "kept": 0,
            "crowd": 0,
            "clipped": 0,
            "dropped_degenerate": 0,
            "dropped_outside": 0,
        }
        for img_id in ids:
            self._targets[img_id] = self._prepare(img_id)
        self._images: dict[int, np.ndarray] = {}
        if cache_images:
            self._cache_images()
        s = self.box_stats
        if s["clipped"] or s["dropped_degenerate"] or s["dropped_outside"]:
            log.warning(
                "%s: %d boxes clipped to the image, %d dropped with non-positive "
                "width/height, %d dropped as empty after clipping (%d crowd boxes "
                "ignored, %d of %d boxes kept)",
                self.ann_file,
                s["clipped"],
                s["dropped_degenerate"],
                s["dropped_outside"],
                s["crowd"],
                s["kept"],
                s["total"],
            )

    def require_boxes(self, purpose: str) -> None:
        """Training and scoring both need a non-crowd box among the split's (first
        ``max_images``) images: DataError naming the file otherwise. ``purpose`` says what the
        caller does, e.g. "train on" or "score"."""
        if not any(
            not a.get("iscrowd", 0) for i in self.ids for a in self.coco.imgToAnns.get(i, [])
        ):
            raise DataError(
                f"{self.ann_file}: none of the {len(self.ids)} images of split {self.split!r} "
                f"has an annotation (a non-crowd box): nothing to {purpose}; nothing was "
                "written (check the annotation file)"
            )

    def check_scorable(self, dropped_gt: str) -> None:
        """What scoring this split needs, checked before any training or inference: a
        non-crowd box, and no box the loader drops unless ``eval.dropped_gt`` says how to score
        it (:func:`refuse_dropped_gt`)."""
        self.require_boxes("score (COCO AP is undefined)")
        refuse_dropped_gt(self.dropped_ann_ids, dropped_gt, self.ann_file)

    def _prepare(self, img_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (XYXY, clipped to the size in the JSON) and labels of one image; counts stats."""
        info = self.coco.imgs[img_id]
        anns = self.coco.imgToAnns.get(img_id, [])
        self.box_stats["total"] += len(anns)
        crowd = sum(1 for a in anns if a.get("iscrowd", 0))
        self.box_stats["crowd"] += crowd
        anns = [a for a in anns if not a.get("iscrowd", 0)]
        if not anns:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        xyxy, keep, degenerate, clipped = clip_boxes(
            [a["bbox"] for a in anns], info["width"], info["height"]
        )
        self.dropped_ann_ids.extend(a["id"] for a, k in zip(anns, keep, strict=True) if not k)
        labels = np.array([self.cat_id_to_label[a["category_id"]] for a in anns], np.int64)
        self.box_stats["kept"] += int(keep.sum())
        self.box_stats["dropped_degenerate"] += int(degenerate.sum())
        self.box_stats["dropped_outside"] += int((~keep & ~degenerate).sum())
        self.box_stats["clipped"] += int(clipped.sum())
        return xyxy.astype(np.float32), labels[keep]

    def _cache_images(self) -> None:
        """Decode every image once (before DataLoader workers fork, so they share the pages)."""
        infos = [self.coco.imgs[i] for i in self.ids]
        sizes = [(info.get("width"), info.get("height")) for info in infos]
        need = sum(3 * w * h for w, h in sizes if isinstance(w, int) and isinstance(h, int))
        if need > CACHE_LIMIT_BYTES:
            raise DataError(
                f"{self.ann_file}: caching {len(self.ids)} decoded images needs about "
                f"{need / 2**30:.1f} GiB (limit {CACHE_LIMIT_BYTES / 2**30:.0f} GiB); "
                "set data.cache_images: false for a dataset this large"
            )
        for index, img_id in enumerate(self.ids):
            self._images[img_id] = load_rgb(self.image_path(index))

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        """The file of the ``index``-th image."""
        return self.img_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def load_sample(self, index: int) -> Sample:
        """The sample before transforms: uint8 RGB image and a target with XYXY boxes."""
        img_id = self.ids[index]
        cached = self._images.get(img_id)
        arr = cached.copy() if cached is not None else load_rgb(self.image_path(index))
        h, w = arr.shape[:2]
        boxes, labels = self._targets[img_id]
        info = self.coco.imgs[img_id]
        if (info["width"], info["height"]) != (w, h):
            # The boxes are in the JSON's pixel frame: with another image they would be wrong.
            raise DataError(
                f"{self.image_path(index)}: the image is {w}x{h} but {self.ann_file} gives "
                f"image {img_id} width {info['width']}, height {info['height']}; fix the "
                "JSON (or the file)"
            )
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes.copy()),
                format="XYXY",
                canvas_size=(h, w),
                dtype=torch.float32,
            ),
            "labels": torch.from_numpy(labels.copy()),
            "image_id": int(img_id),
            "orig_size": (h, w),
        }
        return image, target

    def __getitem__(self, index: int) -> Any:
        image, target = self.load_sample(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"CocoDetection({str(self.root)!r}, {self.split!r}: {len(self)} images, "
            f"{self.num_classes} classes)"
        )


def eval_dataset(cfg: dict[str, Any], split: str | None = None) -> CocoDetection:
    """A run's validation split (or ``split``) with the test-time transforms of its ``eval``."""
    from study.data.transforms import build_eval_transforms

    ev, dc = cfg["eval"], cfg["data"]
    return CocoDetection(
        dc["root"],
        split or dc["val_split"],
        transforms=build_eval_transforms(ev["img_size"], ev["protocol"]),
        max_images=dc["max_images"],
    )


def refuse_dropped_gt(dropped_ids: list[int], mode: str, ann_file: Any) -> None:
    """The one rule for ground-truth boxes the loader drops (non-positive size, or outside the
    image; ``study data check`` lists them): a detector is never trained on them, so under
    ``eval.dropped_gt: error`` (the default) a split holding them is not scored, and a run to
    be scored on it is not trained. ``score`` and ``ignore`` say how COCOeval treats them
    (study/eval/coco_eval.py, ``scored_ground_truth``)."""
    if mode not in DROPPED_GT:
        raise ConfigError(f"eval.dropped_gt: expected one of {', '.join(DROPPED_GT)}, got {mode!r}")
    if dropped_ids and mode == "error":
        shown = ", ".join(map(str, list(dropped_ids)[:5]))
        raise DataError(
            f"{ann_file}: {len(dropped_ids)} ground-truth boxes are dropped by the data loader "
            f"(non-positive width/height or outside the image; annotation ids {shown}"
            f"{', ...' if len(dropped_ids) > 5 else ''}), so COCOeval would count them as "
            "missed by any detector. Fix them (`study data check`), or set eval.dropped_gt: "
            "score (score them anyway, as pycocotools does on the raw file) or ignore (score "
            "them as crowd regions)"
        )
