"""Training / evaluation pipelines (torchvision.transforms.v2 on tv_tensors), mixup and collate.

Every transform maps ``(image, target)`` from :class:`study.data.CocoDetection` to a float image
of the network size (ImageNet-normalised) and a target with plain tensors: ``boxes`` (n, 4) XYXY
in input pixels, ``labels`` (n,), ``weights`` (n,) (mixup ratio, 1.0 otherwise) and ``info``
(``image_id``, ``orig_size`` (H, W), ``scale`` (sx, sy), ``pad`` (px, py)), so that a box maps
back to the original image as ``(box - pad) / scale``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from study.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_UINT8 = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104): padding colour
AUGMENT_KEYS = ("photometric", "expand", "crop", "flip", "affine", "min_box_side")

Target = dict[str, Any]


def _fill() -> dict[Any, Any]:
    return {tv_tensors.Image: MEAN_UINT8, "others": 0}


def _labels_and_weights(inputs: Any) -> tuple[torch.Tensor, ...]:
    target = inputs[1]
    return target["labels"], target["weights"]


def _with_weights(target: Target) -> Target:
    target = dict(target)
    if "weights" not in target:
        target["weights"] = torch.ones(len(target["labels"]), dtype=torch.float32)
    return target


def _normalize(image: torch.Tensor) -> torch.Tensor:
    image = F.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
    return F.normalize(image, list(IMAGENET_MEAN), list(IMAGENET_STD))


def _finish(
    image: torch.Tensor,
    target: Target,
    orig_size: Sequence[int],
    scale: tuple[float, float],
    pad: tuple[float, float],
) -> tuple[torch.Tensor, Target]:
    """Normalise the image and turn the target into plain tensors plus ``info``."""
    info = {
        "image_id": int(target.get("image_id", -1)),
        "orig_size": (int(orig_size[0]), int(orig_size[1])),
        "scale": (float(scale[0]), float(scale[1])),
        "pad": (float(pad[0]), float(pad[1])),
    }
    if "mixup" in target:
        info["mixup"] = target["mixup"]
    out = {
        "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4),
        "labels": target["labels"].as_subclass(torch.Tensor).to(torch.int64),
        "weights": target["weights"].as_subclass(torch.Tensor).to(torch.float32),
        "info": info,
    }
    return _normalize(image), out


def _select(target: Target, keep: torch.Tensor) -> Target:
    target = dict(target)
    for key in ("boxes", "labels", "weights"):
        target[key] = target[key][keep]
    return target


class TrainTransform:
    """The official training order: photometric, expand, crop, flip, affine, square resize.

    Boxes with a side <= ``min_box_side`` (at the training size) are dropped. As in the official
    code, an image without boxes is only resized, and a sample whose augmentation lost every box
    falls back to the plain resized original. ``img_size`` may be changed between batches.
    ``info.scale`` relates the augmented canvas (not the original image) to the input.
    """

    def __init__(self, augment_cfg: dict[str, Any], img_size: int) -> None:
        unknown = set(augment_cfg) - set(AUGMENT_KEYS)
        if unknown:
            raise ConfigError(
                f"train.augment: unknown key(s) {sorted(unknown)}; "
                f"valid keys: {', '.join(AUGMENT_KEYS)}"
            )
        self.cfg = {k: augment_cfg.get(k, False) for k in AUGMENT_KEYS}
        self.min_box_side = float(augment_cfg.get("min_box_side", 0) or 0)
        self.img_size = int(img_size)
        ops: list[Callable[..., Any]] = []
        if self.cfg["photometric"]:
            ops.append(v2.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.1))
        if self.cfg["expand"]:
            ops.append(v2.RandomZoomOut(fill=_fill(), side_range=(1.0, 4.0), p=0.5))
        if self.cfg["crop"]:
            ops.append(v2.RandomIoUCrop())
        if self.cfg["flip"]:
            ops.append(v2.RandomHorizontalFlip(p=0.5))
        if self.cfg["affine"]:
            ops.append(
                v2.RandomApply(
                    [
                        v2.RandomAffine(
                            degrees=10,
                            translate=(0.1, 0.1),
                            scale=(0.9, 1.1),
                            shear=2,
                            fill=_fill(),
                        )
                    ],
                    p=0.5,
                )
            )
        self.augment = v2.Compose(ops) if ops else None
        self.sanitize = v2.SanitizeBoundingBoxes(labels_getter=_labels_and_weights)

    def _resize(
        self, image: torch.Tensor, target: Target, filter_small: bool
    ) -> tuple[torch.Tensor, Target, tuple[float, float]]:
        h, w = image.shape[-2:]
        s = self.img_size
        image, target = v2.Resize((s, s), antialias=False)(image, target)
        if filter_small and len(target["boxes"]):
            wh = target["boxes"][:, 2:] - target["boxes"][:, :2]
            target = _select(target, wh.min(dim=1).values > self.min_box_side)
        return image, target, (s / w, s / h)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        target = _with_weights(target)
        orig_size = target.get("orig_size", tuple(image.shape[-2:]))
        n_in = len(target["boxes"])
        aug_image, aug_target = image, target
        if self.augment is not None and n_in:
            aug_image, aug_target = self.sanitize(*self.augment(image, target))
        out_image, out_target, scale = self._resize(aug_image, aug_target, filter_small=True)
        if n_in and not len(out_target["boxes"]):
            out_image, out_target, scale = self._resize(image, target, filter_small=False)
        return _finish(out_image, out_target, orig_size, scale, (0.0, 0.0))

    def __repr__(self) -> str:
        return f"TrainTransform(img_size={self.img_size}, {self.cfg}, augment={self.augment})"


class EvalTransform:
    """Test-time resize: ``square`` (official plain resize) or ``letterbox`` (keep aspect, pad)."""

    def __init__(self, img_size: int, protocol: str = "square") -> None:
        if protocol not in ("square", "letterbox"):
            raise ConfigError(f"eval.protocol: expected 'square' or 'letterbox', got {protocol!r}")
        self.img_size = int(img_size)
        self.protocol = protocol

    def __call__(
        self, image: torch.Tensor, target: Target | None = None
    ) -> tuple[torch.Tensor, Target]:
        h, w = image.shape[-2:]
        if target is None:
            target = {
                "boxes": tv_tensors.BoundingBoxes(
                    torch.zeros(0, 4), format="XYXY", canvas_size=(h, w)
                ),
                "labels": torch.zeros(0, dtype=torch.int64),
            }
        target = _with_weights(target)
        orig_size = target.get("orig_size", (h, w))
        s = self.img_size
        if self.protocol == "square":
            image, target = v2.Resize((s, s), antialias=False)(image, target)
            return _finish(image, target, orig_size, (s / w, s / h), (0.0, 0.0))
        r = s / max(h, w)
        nh, nw = min(s, max(1, round(h * r))), min(s, max(1, round(w * r)))
        image, target = v2.Resize((nh, nw), antialias=False)(image, target)
        px, py = (s - nw) // 2, (s - nh) // 2
        image, target = v2.Pad([px, py, s - nw - px, s - nh - py], fill=_fill())(image, target)
        return _finish(image, target, orig_size, (nw / w, nh / h), (float(px), float(py)))

    def __repr__(self) -> str:
        return f"EvalTransform(img_size={self.img_size}, protocol={self.protocol!r})"


def build_train_transforms(augment_cfg: dict[str, Any], img_size: int) -> TrainTransform:
    """The training pipeline for ``train.augment`` at a square ``img_size``."""
    return TrainTransform(augment_cfg, img_size)


def build_eval_transforms(img_size: int, protocol: str = "square") -> EvalTransform:
    """The test pipeline (``square`` or ``letterbox``) at ``img_size``."""
    return EvalTransform(img_size, protocol)


def boxes_to_original(boxes: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Map XYXY boxes from input pixels back to the original image: ``(box - pad) / scale``."""
    sx, sy = info["scale"]
    px, py = info["pad"]
    pad = boxes.new_tensor([px, py, px, py])
    scale = boxes.new_tensor([sx, sy, sx, sy])
    return (boxes - pad) / scale


def collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack transformed samples into ``(images (B, 3, S, S), [target, ...])``."""
    images = [img.as_subclass(torch.Tensor) for img, _ in batch]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) != 1:
        raise ValueError(
            f"collate: images of different shapes {sorted(shapes)}; "
            "apply a transform that resizes to a common size first"
        )
    targets = []
    for img, t in batch:
        t = _with_weights(t)
        info = t.get("info") or {
            "image_id": int(t.get("image_id", -1)),
            "orig_size": tuple(t.get("orig_size", img.shape[-2:])),
            "scale": (1.0, 1.0),
            "pad": (0.0, 0.0),
        }
        targets.append(
            {
                "boxes": t["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4),
                "labels": t["labels"].as_subclass(torch.Tensor).to(torch.int64),
                "weights": t["weights"].as_subclass(torch.Tensor).to(torch.float32),
                "info": info,
            }
        )
    return torch.stack(images), targets


class MixupDataset(Dataset):
    """The official mixup: blend two raw images with ratio ``lam ~ Beta(alpha, alpha)``.

    Both images sit at the top-left of a canvas of (max H, max W); the pixel is
    ``floor(lam * a + (1 - lam) * b)`` where both images cover it (zero elsewhere, as in the
    official code). Boxes are concatenated with weights ``lam`` and ``1 - lam``. Randomness is
    drawn from torch's RNG (or ``generator``), so a fixed seed (and the DataLoader's per-worker
    seeds) reproduces a run. ``set_enabled(False)`` returns the plain sample (weights 1).
    """

    def __init__(
        self,
        dataset: Any,
        alpha: float = 1.5,
        transforms: Callable[[Any, Any], Any] | None = None,
        enabled: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.dataset = dataset
        self.alpha = float(alpha)
        self.transforms = transforms
        self.enabled = bool(enabled)
        self.generator = generator

    def set_enabled(self, enabled: bool) -> None:
        """Turn mixup on or off (off: plain samples, all weights 1)."""
        self.enabled = bool(enabled)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)  # num_classes, label_to_cat_id, ...

    def _raw(self, index: int) -> tuple[torch.Tensor, Target]:
        if hasattr(self.dataset, "load_sample"):
            return self.dataset.load_sample(index)
        return self.dataset[index]

    def _rng(self) -> np.random.Generator:
        seed = int(torch.randint(0, 2**62, (), generator=self.generator))
        return np.random.default_rng(seed)

    def mix(self, index: int) -> tuple[torch.Tensor, Target]:
        """The raw (untransformed) sample, mixed when enabled; the target has ``weights``."""
        img1, t1 = self._raw(index)
        t1 = _with_weights(t1)
        n = len(self)
        if not self.enabled or n < 2:
            return img1, t1
        rng = self._rng()
        lam = float(np.clip(rng.beta(self.alpha, self.alpha), 0.0, 1.0))
        if lam >= 1.0:
            return img1, t1
        index2 = int(rng.integers(0, n - 1))
        index2 += index2 >= index
        img2, t2 = self._raw(index2)
        (h1, w1), (h2, w2) = img1.shape[-2:], img2.shape[-2:]
        h, w = max(h1, h2), max(w1, w2)
        canvas = torch.zeros((3, h, w), dtype=torch.float32)
        canvas[:, :h1, :w1] = img1.as_subclass(torch.Tensor).float() * lam
        canvas[:, :h2, :w2] += img2.as_subclass(torch.Tensor).float() * (1.0 - lam)
        image = tv_tensors.Image(canvas.clamp_(0, 255).to(torch.uint8))
        boxes = torch.cat(
            [t1["boxes"].as_subclass(torch.Tensor), t2["boxes"].as_subclass(torch.Tensor)]
        ).to(torch.float32)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.cat([t1["labels"], t2["labels"]]),
            "weights": torch.cat(
                [torch.full((len(t1["labels"]),), lam), torch.full((len(t2["labels"]),), 1.0 - lam)]
            ).float(),
            "image_id": t1.get("image_id", -1),
            "orig_size": (h, w),
            "mixup": {"lam": lam, "image_id2": t2.get("image_id", -1)},
        }
        return image, target

    def __getitem__(self, index: int) -> Any:
        image, target = self.mix(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
