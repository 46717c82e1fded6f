"""Gradient consistency (the paper's section 3.3, measured): does fusion make a location's
gradient mix "object" from one level with "background" from the others?

For the three pre-fusion maps x^0, x^1, x^2 (the neck's outputs, stride 32, 16, 8; the paper's
x^1..x^3) and each head level's own loss L^k, ``level_gradients`` takes g^{n<-k} = dL^k/dx^n
(one ``torch.autograd.grad`` per level). Every location of x^n is labelled by the loss's own target
assignment at every level k (``LevelLabels``): positive (an object assigned there), ignored (a
negative whose box already overlaps an object) or background. At a location of x^k that is
positive at level k and background at the two others, the conflict is what the other levels'
losses send to it:

    share  = |sum_{j != k} g^{k<-j}| / (|g^{k<-k}| + |sum_{j != k} g^{k<-j}|)
    cosine = cos(g^{k<-k}, sum_{j != k} g^{k<-j})

(norms over channels at the location). With sum or concat fusion both are set by the features;
the paper argues ASFF's weights can scale the other levels' terms to zero. Its argument treats
the weights as constants, so every quantity is measured twice: with the full gradient, and with
the weights detached (``LevelResize.detach_weights``). For fusions with weights, the locations
also record the weight that the other levels' outputs give to level k there (``w_others``) and
that level k's own output gives to it (``w_own``).

Measured with BatchNorm in training mode (batch statistics), as training computes the gradient
(``study.analysis.run`` sets the mode).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.engine.loss import LevelLoss, YOLOLoss
from study.models.fusions.resize import LevelResize

BACKGROUND, IGNORED, POSITIVE = 0, 1, 2  # ordered: the max over a region is its label
GRADIENT_MODES = ("full", "detached")
# COCO's size buckets (object area in original-image pixels)
BUCKETS = ("small", "medium", "large")
SMALL_AREA, LARGE_AREA = 32.0**2, 96.0**2


def size_bucket(area: Tensor) -> Tensor:
    """0 small, 1 medium, 2 large (COCO thresholds on the area in original pixels)."""
    return (area >= SMALL_AREA).long() + (area >= LARGE_AREA).long()


@dataclass(frozen=True)
class LevelLabels:
    """One level's assignment on its own grid: ``label`` (B, H, W) in BACKGROUND / IGNORED /
    POSITIVE (a cell is positive if any anchor slot is, ignored if any is and none is positive)
    and ``area`` (B, H, W), the original-image area of the object assigned there (0 elsewhere)."""

    label: Tensor
    area: Tensor

    @classmethod
    def from_loss(cls, level: LevelLoss, object_area: Tensor) -> LevelLabels:
        positive = (level.obj_target > 0).any(dim=1)
        ignored = (level.obj_weight == 0).any(dim=1) & ~positive
        label = torch.full_like(positive, BACKGROUND, dtype=torch.long)
        label[ignored] = IGNORED
        label[positive] = POSITIVE
        idx = level.gt_index.amax(dim=1)  # the (last) object assigned at the cell
        area = torch.where(idx >= 0, object_area[idx.clamp(min=0)], torch.zeros_like(idx).float())
        return cls(label, area)

    def on_grid(self, size: tuple[int, int]) -> LevelLabels:
        """The labels seen from another level's grid: a coarser cell takes the strongest label
        (and largest object) of the finer cells it covers, a finer cell that of its parent."""
        return LevelLabels(
            resample(self.label.float(), size, "max").long(), resample(self.area, size, "max")
        )


def resample(x: Tensor, size: tuple[int, int], reduce: str) -> Tensor:
    """(B, H, W) -> (B, h, w) between pyramid grids (sizes differ by powers of two): nearest
    upsampling, or ``reduce`` ("max" or "mean") over each coarse cell's block."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h < size[0]:
        return F.interpolate(x[:, None], size=size, mode="nearest")[:, 0]
    k = h // size[0]
    pool = F.max_pool2d if reduce == "max" else F.avg_pool2d
    return pool(x[:, None], kernel_size=k, stride=k)[:, 0]


@contextmanager
def weights_detached(model: nn.Module, detach: bool) -> Iterator[None]:
    """Cut (or keep) the gradient through the fusion's weights for the duration."""
    levels = [m for m in model.modules() if isinstance(m, LevelResize)]
    before = [m.detach_weights for m in levels]
    for m in levels:
        m.detach_weights = detach
    try:
        yield
    finally:
        for m, b in zip(levels, before, strict=True):
            m.detach_weights = b


@dataclass
class Pass:
    """One forward and three backward passes over a batch."""

    grads: list[list[Tensor]]  # grads[k][n] = dL^k / dx^n, (B, C_n, H_n, W_n)
    levels: list[LevelLoss]
    weights: list[Tensor] | None  # per output level (B, 3, H, W), or None
    fused: list[Tensor]


def level_gradients(
    model: nn.Module,
    criterion: YOLOLoss,
    feats: Sequence[Tensor],
    targets: list[dict],
    img_size: tuple[int, int],
    detach: bool = False,
) -> Pass:
    """g^{n<-k} for every head level k and input level n (zeros where L^k does not reach x^n).

    ``feats`` are the neck's maps (``model.features``, computed once per batch without grad).
    """
    feats = [f.detach().requires_grad_() for f in feats]
    with weights_detached(model, detach):
        fused, weights = model.fuse(feats)
        outputs = model.predict_levels(fused)
        levels = criterion.level_losses(outputs, targets, img_size)
        grads = []
        for k, level in enumerate(levels):
            total = sum(level.terms.values())
            g = torch.autograd.grad(
                total, feats, retain_graph=k < len(levels) - 1, allow_unused=True
            )
            pairs = zip(g, feats, strict=True)
            grads.append([torch.zeros_like(f) if gi is None else gi for gi, f in pairs])
    detached_weights = None if weights is None else [w.detach() for w in weights]
    return Pass(grads, levels, detached_weights, [f.detach() for f in fused])


def target_boxes(target: dict, device: torch.device | None = None) -> Tensor:
    """A target's boxes as a plain (N, 4) XYXY tensor in the (resized) input image's pixels, on
    ``device`` (None: where they are)."""
    return target["boxes"].as_subclass(Tensor).to(device).reshape(-1, 4)


def box_areas(target: dict, device: torch.device | None = None) -> Tensor:
    """Original-image area of each of a target's boxes (undoing the resize ``info.scale``)."""
    boxes = target_boxes(target, device)
    sx, sy = target["info"]["scale"]
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)


def object_areas(targets: list[dict], device: torch.device) -> Tensor:
    """Original-image area of every target box, concatenated in batch order (as the loss)."""
    areas = [box_areas(t, device) for t in targets]
    return torch.cat(areas) if areas else torch.zeros(0, device=device)


@dataclass
class ConflictSamples:
    """Per-location values, collected over batches; one entry per (positive level k) location."""

    level: list[np.ndarray] = field(default_factory=list)
    bucket: list[np.ndarray] = field(default_factory=list)
    share: list[np.ndarray] = field(default_factory=list)
    cosine: list[np.ndarray] = field(default_factory=list)
    w_others: list[np.ndarray] = field(default_factory=list)
    w_own: list[np.ndarray] = field(default_factory=list)

    def add(self, **values: Tensor) -> None:
        for key, v in values.items():
            getattr(self, key).append(v.detach().cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        keys = ("level", "bucket", "share", "cosine", "w_others", "w_own")
        return {
            k: np.concatenate(getattr(self, k)) if getattr(self, k) else np.zeros(0) for k in keys
        }


def conflict_at_positives(p: Pass, object_area: Tensor, samples: ConflictSamples) -> None:
    """Add every location of x^k positive at level k and background at the other levels."""
    labels = [LevelLabels.from_loss(level, object_area) for level in p.levels]
    n_levels = len(labels)
    for k in range(n_levels):
        grid = tuple(labels[k].label.shape[-2:])
        seen = [lab.on_grid(grid) for lab in labels]
        mask = seen[k].label == POSITIVE
        for j in range(n_levels):
            if j != k:
                mask &= seen[j].label == BACKGROUND
        if not mask.any():
            continue
        own = p.grads[k][k]  # (B, C, H, W) on level k's grid
        others = sum(p.grads[j][k] for j in range(n_levels) if j != k)
        own_v = own.permute(0, 2, 3, 1)[mask]  # (N, C)
        oth_v = others.permute(0, 2, 3, 1)[mask]
        own_n, oth_n = own_v.norm(dim=1), oth_v.norm(dim=1)
        total = own_n + oth_n
        share = torch.where(total > 0, oth_n / total.clamp(min=1e-30), torch.nan)
        cosine = F.cosine_similarity(own_v, oth_v, dim=1, eps=1e-30)
        cosine = torch.where((own_n > 0) & (oth_n > 0), cosine, torch.nan)
        if p.weights is not None:
            w_own = p.weights[k][:, k][mask]
            w_oth = torch.stack(
                [resample(p.weights[j][:, k], grid, "mean") for j in range(n_levels) if j != k]
            ).mean(0)[mask]
        else:
            w_own = w_oth = torch.full_like(share, torch.nan)
        samples.add(
            level=torch.full_like(share, k),
            bucket=size_bucket(seen[k].area[mask]).float(),
            share=share,
            cosine=cosine,
            w_others=w_oth,
            w_own=w_own,
        )


def summarize(samples: dict[str, np.ndarray]) -> list[dict[str, float | str | int]]:
    """Rows per size bucket (and ``all``): location count and the means/medians."""
    rows = []
    for b, name in [(None, "all"), *enumerate(BUCKETS)]:
        sel = np.ones(len(samples["share"]), bool) if b is None else samples["bucket"] == b
        share, cos = samples["share"][sel], samples["cosine"][sel]
        row: dict[str, float | str | int] = {"bucket": name, "locations": int(sel.sum())}
        row["nonfinite"] = int((~np.isfinite(share)).sum())
        row["share_mean"] = _nanstat(np.nanmean, share)
        row["share_median"] = _nanstat(np.nanmedian, share)
        row["cosine_mean"] = _nanstat(np.nanmean, cos)
        row["w_others_mean"] = _nanstat(np.nanmean, samples["w_others"][sel])
        row["w_own_mean"] = _nanstat(np.nanmean, samples["w_own"][sel])
        rows.append(row)
    return rows


def _nanstat(fn, values: np.ndarray) -> float:  # noqa: ANN001
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else float("nan")


def binned_by_weight(samples: dict[str, np.ndarray], bins: int = 10) -> list[dict[str, float]]:
    """Mean conflict share in bins of ``w_others`` (fusions with weights; empty otherwise)."""
    w, share = samples["w_others"], samples["share"]
    ok = np.isfinite(w) & np.isfinite(share)
    if not ok.any():
        return []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(w[ok], edges) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        sel = which == i
        if sel.any():
            rows.append(
                {
                    "w_low": float(edges[i]),
                    "w_high": float(edges[i + 1]),
                    "locations": int(sel.sum()),
                    "share_mean": float(share[ok][sel].mean()),
                }
            )
    return rows


def agreement(
    levels: Sequence[LevelLoss],
    weights: Sequence[Tensor],
    targets: list[dict],
    object_area: Tensor,
    strides: Sequence[int],
) -> list[tuple[int, int, int, np.ndarray]]:
    """Claim C6: per object positive at level k, the weights at its centre cell on output level k.

    Returns (level k, size bucket, argmax input level, the three weights) per object; an object
    that lost its cell to another object (the loss's last-target-wins rule) is not counted.
    """
    centres, image_of = [], []
    for b, t in enumerate(targets):
        boxes = target_boxes(t)
        centres.append(
            torch.stack(((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2), 1)
        )
        image_of.append(torch.full((len(boxes),), b, dtype=torch.long))
    if not centres:
        return []
    centre, image = torch.cat(centres), torch.cat(image_of)
    out = []
    for k, level in enumerate(levels):
        assigned = level.gt_index[level.gt_index >= 0].unique()
        w = weights[k]  # (B, 3, H, W)
        h, wd = w.shape[-2:]
        for idx in assigned.tolist():
            i = int(min(max(centre[idx, 0].item() // strides[k], 0), wd - 1))
            j = int(min(max(centre[idx, 1].item() // strides[k], 0), h - 1))
            vec = w[int(image[idx]), :, j, i].cpu().numpy()
            bucket = int(size_bucket(object_area[idx : idx + 1])[0])
            out.append((k, bucket, int(vec.argmax()), vec))
    return out
