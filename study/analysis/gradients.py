"""Gradient consistency (the paper's section 3.3, measured): does fusion make a location's
gradient mix "object" from one level with "background" from the others?

For the three pre-fusion maps x^0, x^1, x^2 (the neck's outputs, stride 32, 16, 8; the paper's
x^1..x^3) and each head level's own loss L^k, ``level_gradients`` takes g^{n<-k} = dL^k/dx^n
(one ``torch.autograd.grad`` per level).

**The location set is fixed by the ground truth alone** (``assigned_labels``): every object goes
to the level of its best predefined anchor (w/h IoU, as the loss assigns it) and to the cell of
its centre there. A location of x^k is analysed when it is such a cell at level k and no object
sits at another level within one cell of it (``MARGIN``: a 3x3 convolution or a strided
resampling carries a neighbour's gradient). Predictions never enter, so the same locations are
analysed at every checkpoint and for every strategy (the loss's ignore rule, which reads the
predicted boxes, is not used).

At such a location, with own = g^{k<-k} and cross = sum_{j != k} g^{k<-j} (channel vectors):

    own norm, cross norm = |own| / s, |cross| / s   (s: the batch's loss per image, so that
                                                     checkpoints with different losses compare)
    cosine               = cos(own, cross); negative cosine = conflict (PCGrad's definition)
    share                = |cross| / (|own| + |cross|)

The share is a ratio to the level's own gradient: it rises when that gradient shrinks (a level
whose own weight is near 0, a loss already fitted) without any change in what the other levels
send. The paper's mechanism (ASFF's weights scale the other levels' terms towards 0) is a
statement about the cross norm; whether those terms oppose the own one at all is the cosine's.

With sum or concat fusion these are set by the features; the paper argues ASFF's weights can
scale the other levels' terms to zero. Its argument treats the weights as constants, so every
quantity is measured twice: with the full gradient, and with the weights detached
(``LevelResize.detach_weights``). For fusions with weights, the locations also record the weight
that the other levels' outputs give to level k there (``w_others``) and that level k's own output
gives to it (``w_own``).

Measured with BatchNorm in training mode (batch statistics), as training computes the gradient
(``study.analysis.run`` sets the mode). Claim C6 (``agreement``) reads the weights in eval mode,
as inference computes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.engine.loss import YOLOLoss, wh_iou
from study.models.fusions.resize import LevelResize

BACKGROUND, POSITIVE = 0, 1
GRADIENT_MODES = ("full", "detached")
# COCO's size buckets (object area in original-image pixels)
BUCKETS = ("small", "medium", "large")
SMALL_AREA, LARGE_AREA = 32.0**2, 96.0**2
MARGIN = 1  # cells around another level's object that are not "background" there


def size_bucket(area: Tensor) -> Tensor:
    """0 small, 1 medium, 2 large (COCO thresholds on the area in original pixels)."""
    return (area >= SMALL_AREA).long() + (area >= LARGE_AREA).long()


@dataclass(frozen=True)
class LevelLabels:
    """One level's assignment on its own grid: ``label`` (B, H, W), POSITIVE where an object
    is assigned, BACKGROUND elsewhere, and ``area`` (B, H, W), the original-image area of the
    largest object assigned there (0 elsewhere)."""

    label: Tensor
    area: Tensor

    def on_grid(self, size: tuple[int, int], margin: int = 0) -> LevelLabels:
        """The labels seen from another level's grid, after growing the positives by ``margin``
        cells on their own grid: a coarser cell takes the strongest label (and largest object)
        of the finer cells it covers, a finer cell that of its parent."""
        label, area = self.label.float(), self.area
        if margin:
            k = 2 * margin + 1
            label = F.max_pool2d(label[:, None], k, stride=1, padding=margin)[:, 0]
            area = F.max_pool2d(area[:, None], k, stride=1, padding=margin)[:, 0]
        return LevelLabels(resample(label, size, "max").long(), resample(area, size, "max"))


def object_levels(criterion: YOLOLoss, boxes: Tensor) -> Tensor:
    """The level each (N, 4) XYXY box is assigned to: that of its best predefined anchor by
    w/h IoU (first on ties), as the loss assigns it."""
    wh = boxes[:, 2:] - boxes[:, :2]
    anchors = criterion.anchors.to(boxes.device)
    best = wh_iou(wh[:, None, :], anchors[None, :, :]).argmax(dim=1)
    return criterion.level_of.to(boxes.device)[best]


def assigned_labels(
    criterion: YOLOLoss,
    targets: list[dict],
    object_area: Tensor,
    grids: Sequence[tuple[int, int]],
    strides: Sequence[int],
) -> list[LevelLabels]:
    """Every level's labels from the ground truth alone: each object positive at the cell of its
    centre on its assigned level (``object_levels``); the same at every checkpoint."""
    device = object_area.device
    per_image = [target_boxes(t, device) for t in targets]
    boxes = torch.cat(per_image) if per_image else torch.zeros((0, 4), device=device)
    image = torch.cat(
        [
            torch.full((len(bx),), b, dtype=torch.long, device=device)
            for b, bx in enumerate(per_image)
        ]
        or [torch.zeros(0, dtype=torch.long, device=device)]
    )
    levels = object_levels(criterion, boxes)
    out = []
    for k, ((h, w), stride) in enumerate(zip(grids, strides, strict=True)):
        label = torch.zeros((len(targets), h, w), dtype=torch.long, device=device)
        area = torch.zeros((len(targets), h, w), device=device)
        sel = torch.nonzero(levels == k).squeeze(1)
        if sel.numel():
            i, j = centre_cells(boxes[sel], stride, h, w)
            label[image[sel], j, i] = POSITIVE
            flat = (image[sel] * h + j) * w + i
            area.view(-1).scatter_reduce_(0, flat, object_area[sel], reduce="amax")
        out.append(LevelLabels(label, area))
    return out


def centre_cells(boxes: Tensor, stride: int, h: int, w: int) -> tuple[Tensor, Tensor]:
    """The cell (i, j) of each (N, 4) XYXY box's centre on a level of ``stride`` with h x w
    cells: where the analysis takes an object's label and its fusion weights."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx / stride).long().clamp(0, w - 1), (cy / stride).long().clamp(0, h - 1)


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
    weights: list[Tensor] | None  # per output level (B, 3, H, W), or None
    loss_per_image: float  # sum over levels of L^k, divided by the batch size


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
        grads, loss = [], 0.0
        for k, level in enumerate(levels):
            total = sum(level.terms.values())
            loss += float(total.detach())
            g = torch.autograd.grad(
                total, feats, retain_graph=k < len(levels) - 1, allow_unused=True
            )
            pairs = zip(g, feats, strict=True)
            grads.append([torch.zeros_like(f) if gi is None else gi for gi, f in pairs])
    detached_weights = None if weights is None else [w.detach() for w in weights]
    batch = feats[0].shape[0]
    return Pass(grads, detached_weights, loss / batch)


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


SAMPLE_KEYS = (
    "level",
    "bucket",
    "own_norm",
    "cross_norm",
    "share",
    "cosine",
    "w_others",
    "w_own",
)


@dataclass
class ConflictSamples:
    """Per-location values (``SAMPLE_KEYS``), collected over batches; one entry per analysed
    location (positive at its level k, background at the others)."""

    values: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {k: [] for k in SAMPLE_KEYS}
    )

    def add(self, **values: Tensor) -> None:
        for key, v in values.items():
            self.values[key].append(v.detach().cpu().numpy().astype(np.float64))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.values.items()}


def conflict_locations(labels: Sequence[LevelLabels], k: int) -> tuple[Tensor, Tensor]:
    """(mask, area) on level k's grid: positive at level k and no object at another level
    within ``MARGIN`` cells; the area of the object there."""
    grid = tuple(labels[k].label.shape[-2:])
    mask = labels[k].label == POSITIVE
    for j, lab in enumerate(labels):
        if j != k:
            mask &= lab.on_grid(grid, margin=MARGIN).label == BACKGROUND
    return mask, labels[k].area


def conflict_at_positives(p: Pass, labels: Sequence[LevelLabels], samples: ConflictSamples) -> None:
    """Add every conflict location (``conflict_locations``) of every level of the batch."""
    n_levels = len(labels)
    scale = p.loss_per_image if p.loss_per_image > 0 else float("nan")
    for k in range(n_levels):
        mask, area = conflict_locations(labels, k)
        if not mask.any():
            continue
        own = p.grads[k][k]  # (B, C, H, W) on level k's grid
        others = sum(p.grads[j][k] for j in range(n_levels) if j != k)
        own_v = own.permute(0, 2, 3, 1)[mask].double()  # (N, C)
        oth_v = others.permute(0, 2, 3, 1)[mask].double()
        own_n, oth_n = own_v.norm(dim=1), oth_v.norm(dim=1)
        total = own_n + oth_n
        share = torch.where(total > 0, oth_n / total.clamp(min=1e-300), torch.nan)
        cosine = F.cosine_similarity(own_v, oth_v, dim=1, eps=1e-300)
        cosine = torch.where((own_n > 0) & (oth_n > 0), cosine, torch.nan)
        grid = mask.shape[-2:]
        if p.weights is not None:
            w_own = p.weights[k][:, k][mask]
            w_oth = torch.stack(
                [resample(p.weights[j][:, k], grid, "mean") for j in range(n_levels) if j != k]
            ).mean(0)[mask]
        else:
            w_own = w_oth = torch.full_like(share, torch.nan)
        samples.add(
            level=torch.full_like(share, k),
            bucket=size_bucket(area[mask]).double(),
            own_norm=own_n / scale,
            cross_norm=oth_n / scale,
            share=share,
            cosine=cosine,
            w_others=w_oth,
            w_own=w_own,
        )


def _measures(samples: dict[str, np.ndarray], sel: np.ndarray) -> dict[str, float | int]:
    """The summary of the locations ``sel``: count, means (and medians) of every measure and
    the negative-cosine share (of the locations whose cosine is defined)."""
    share, cos = samples["share"][sel], samples["cosine"][sel]
    finite_cos = cos[np.isfinite(cos)]
    return {
        "locations": int(sel.sum()),
        "nonfinite": int((~np.isfinite(share)).sum()),
        "own_norm_mean": _nanstat(np.mean, samples["own_norm"][sel]),
        "own_norm_median": _nanstat(np.median, samples["own_norm"][sel]),
        "cross_norm_mean": _nanstat(np.mean, samples["cross_norm"][sel]),
        "cross_norm_median": _nanstat(np.median, samples["cross_norm"][sel]),
        "share_mean": _nanstat(np.mean, share),
        "share_median": _nanstat(np.median, share),
        "cosine_mean": _nanstat(np.mean, cos),
        "negative_cosine": float((finite_cos < 0).mean()) if finite_cos.size else float("nan"),
        "w_others_mean": _nanstat(np.mean, samples["w_others"][sel]),
        "w_own_mean": _nanstat(np.mean, samples["w_own"][sel]),
    }


def summarize(
    samples: dict[str, np.ndarray], levels: int = 3
) -> list[dict[str, float | str | int]]:
    """Rows per level and size bucket (and ``all`` sizes of the level); levels are never
    pooled: their locations differ in object size, weight and gradient scale."""
    rows = []
    for k in range(levels):
        at_level = samples["level"] == k
        for b, name in [(None, "all"), *enumerate(BUCKETS)]:
            sel = at_level if b is None else at_level & (samples["bucket"] == b)
            rows.append({"level": k, "bucket": name, **_measures(samples, sel)})
    return rows


def _nanstat(fn, values: np.ndarray) -> float:  # noqa: ANN001
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else float("nan")


BIN_MEASURES = ("share_mean", "cosine_mean", "negative_cosine", "own_norm_mean", "cross_norm_mean")


def binned_by_weight(
    samples: dict[str, np.ndarray], bins: int = 10, levels: int = 3
) -> list[dict[str, float | int]]:
    """Per level, the measures (``BIN_MEASURES``) in bins of ``w_others`` (fusions with
    weights; empty otherwise). Binned within a level only: pooled over levels, a bin's value
    would mostly tell which level fills it."""
    ok = np.isfinite(samples["w_others"])
    if not ok.any():
        return []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(samples["w_others"], edges) - 1, 0, bins - 1)
    rows = []
    for k in range(levels):
        for i in range(bins):
            sel = ok & (samples["level"] == k) & (which == i)
            if sel.any():
                m = _measures(samples, sel)
                rows.append(
                    {
                        "level": k,
                        "w_low": float(edges[i]),
                        "w_high": float(edges[i + 1]),
                        "locations": m["locations"],
                        **{key: m[key] for key in BIN_MEASURES},
                    }
                )
    return rows


def agreement(
    object_level: Tensor,
    weights: Sequence[Tensor],
    targets: list[dict],
    object_area: Tensor,
    strides: Sequence[int],
) -> list[tuple[int, int, int, np.ndarray]]:
    """Claim C6: per object, assigned to level k (``object_levels``), the weights at its centre
    cell on output level k.

    Returns (level k, size bucket, argmax input level, the three weights) per object.
    """
    records = []
    n = 0
    for b, t in enumerate(targets):
        boxes = target_boxes(t)
        for box in boxes:
            k = int(object_level[n])
            w = weights[k]  # (B, 3, H, W)
            h, wd = w.shape[-2:]
            i, j = centre_cells(box[None], strides[k], h, wd)
            vec = w[b, :, int(j[0]), int(i[0])].cpu().numpy()
            bucket = int(size_bucket(object_area[n : n + 1])[0])
            records.append((k, bucket, int(vec.argmax()), vec))
            n += 1
    return records
