"""YOLOv3 / ASFF detection loss, matching the official ASFF head's training branch.

The official code (GOATmessi8/ASFF, ``models/yolov3_head.py``) computes the loss inside each head;
here one module takes every level's :class:`~study.models.outputs.LevelOutput` and the per-image
targets, and returns the same five terms, summed over levels and divided by the batch size:

* ``anchor``: guided-anchoring shape loss ``1 - IoU^2`` (w/h only) of the predicted priors at the
  assigned anchor slot and the anchor-free slot (0 for a plain YOLOv3 head);
* ``iou``: ``(1 - IoU^2)`` (``iou_loss="iou"``, official) or GIoU loss between the decoded
  positive box and its ground truth, weighted by ``2 - w*h/img_area`` (0 for ``"none"``);
* ``l1``: BCE-with-logits on the in-cell centre offset plus L1 on ``log(gt_wh / prior_wh)``, both
  with the same size weight. As in the official head, the target keeps the prior's gradient, so
  with guided anchoring this term also trains the shape branch (``l1_prior_grad=False`` detaches
  it, this study's behaviour before it followed the official code);
* ``obj``: BCE-with-logits objectness over every slot; negatives whose decoded box overlaps a
  ground truth by more than ``ignore_thresh`` are ignored, positives are weighted by the mixup
  ratio;
* ``cls``: BCE-with-logits over classes at positives (optionally with the official smoothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss

if TYPE_CHECKING:
    from study.models.outputs import LevelOutput

IOU_LOSSES = ("none", "iou", "giou")
LOSS_KEYS = ("anchor", "iou", "l1", "obj", "cls", "total")


class LevelLoss(NamedTuple):
    """One level's loss terms (un-normalised) and the target assignment behind them.

    ``obj_target`` and ``obj_weight`` are ``(B, A, H, W)``: 1 at positives, and the objectness
    weight (0 where a negative is ignored); ``gt_index`` is the index (into the concatenated
    targets of the batch) of the object assigned at each positive, -1 elsewhere.
    """

    terms: dict[str, Tensor]
    obj_target: Tensor
    obj_weight: Tensor
    gt_index: Tensor


def wh_iou(wh_a: Tensor, wh_b: Tensor) -> Tensor:
    """IoU of boxes given by width/height only, both centred at the origin.

    Shapes broadcast: ``(..., 2)`` and ``(..., 2)`` give ``(...)``.
    """
    inter = torch.minimum(wh_a[..., 0], wh_b[..., 0]).clamp(min=0) * torch.minimum(
        wh_a[..., 1], wh_b[..., 1]
    ).clamp(min=0)
    union = wh_a[..., 0] * wh_a[..., 1] + wh_b[..., 0] * wh_b[..., 1] - inter
    return inter / (union + 1e-16)


def paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Element-wise IoU of two ``(N, 4)`` XYXY box sets (the official ``IOUloss`` geometry)."""
    tl = torch.maximum(boxes_a[:, :2], boxes_b[:, :2])
    br = torch.minimum(boxes_a[:, 2:], boxes_b[:, 2:])
    inter = (br - tl).clamp(min=0).prod(dim=1)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).prod(dim=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).prod(dim=1)
    return inter / (area_a + area_b - inter + 1e-16)


def last_unique(keys: Tensor) -> Tensor:
    """Indices of the last occurrence of each distinct value of ``keys`` (1-D, int64).

    Used so that, as in the official per-target loop, a later target overwrites an earlier one
    that was assigned to the same image, slot and cell, deterministically.
    """
    if keys.numel() == 0:
        return keys.new_zeros(0)
    _, inverse = torch.unique(keys, return_inverse=True)
    positions = torch.arange(keys.numel(), device=keys.device)
    last = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.long, device=keys.device)
    return last.scatter_reduce(0, inverse, positions, reduce="amax", include_self=True)


def _as_plain(t: Tensor | Sequence[float], device: torch.device, dtype: torch.dtype) -> Tensor:
    """A plain tensor (strips ``tv_tensors`` subclasses) on ``device`` with ``dtype``."""
    t = torch.as_tensor(t)
    if type(t) is not Tensor:
        t = t.as_subclass(Tensor)
    return t.to(device=device, dtype=dtype)


class _Targets(NamedTuple):
    """The batch's ground truths, concatenated over images, and their best predefined anchor."""

    xyxy: Tensor  # (N, 4) boxes in input pixels
    cxcywh: Tensor  # (N, 4) the same boxes as centre and size
    labels: Tensor  # (N,) int64
    weights: Tensor  # (N,) mixup ratio
    image: Tensor  # (N,) index of the image in the batch
    best_iou: Tensor  # (N,) w/h IoU with the best of the nine anchors
    level: Tensor  # (N,) the level of that anchor
    slot: Tensor  # (N,) its slot within the level
    per_image: list[Tensor]  # per image, the indices of its targets


class _Positives(NamedTuple):
    """One level's positives after de-duplication: cell, slot and the assigned target."""

    b: Tensor  # image index
    slot: Tensor  # anchor slot (the anchor-free slot where its prior fits better)
    j: Tensor  # cell row
    i: Tensor  # cell column
    k: Tensor  # index into the concatenated targets
    cx: Tensor  # target centre x in input pixels
    cy: Tensor  # target centre y in input pixels
    wh: Tensor  # (P, 2) target size in input pixels


def _decode(raw: Tensor, prior_wh: Tensor, stride: float) -> Tensor:
    """Decoded boxes ``(B, A, H, W, 4)`` (cx, cy, w, h) in input pixels; w/h keep the prior's
    gradient."""
    grid_h, grid_w = raw.shape[2:4]
    grid_y, grid_x = torch.meshgrid(
        torch.arange(grid_h, device=raw.device, dtype=raw.dtype),
        torch.arange(grid_w, device=raw.device, dtype=raw.dtype),
        indexing="ij",
    )
    return torch.stack(
        (
            (torch.sigmoid(raw[..., 0]) + grid_x) * stride,
            (torch.sigmoid(raw[..., 1]) + grid_y) * stride,
            torch.exp(raw[..., 2]) * prior_wh[..., 0],
            torch.exp(raw[..., 3]) * prior_wh[..., 1],
        ),
        dim=-1,
    )


def _shape_loss(
    prior_wh: Tensor,
    cells: tuple[Tensor, Tensor, Tensor, Tensor],
    wh: Tensor,
    free: int,
    shape: tuple[int, ...],
) -> Tensor:
    """Guided-anchor shape loss ``1 - IoU^2`` (w/h only) of the priors at each target's slot
    and at the anchor-free slot ``free`` of its cell; a later target wins a shared prior.

    ``cells`` is ``(b, a, j, i)``: image, assigned slot, cell row and column per target;
    ``shape`` is the level's ``(B, A, H, W)``.
    """
    b, a, j, i = cells
    _, n_slots, grid_h, grid_w = shape
    eb = torch.stack((b, b), 1).reshape(-1)
    es = torch.stack((a, torch.full_like(a, free)), 1).reshape(-1)
    ej = torch.stack((j, j), 1).reshape(-1)
    ei = torch.stack((i, i), 1).reshape(-1)
    ewh = wh.repeat_interleave(2, dim=0)
    keep = last_unique(((eb * n_slots + es) * grid_h + ej) * grid_w + ei)
    shape_iou = wh_iou(prior_wh[eb[keep], es[keep], ej[keep], ei[keep]], ewh[keep])
    return (1.0 - shape_iou**2).sum()


class YOLOLoss(nn.Module):
    """Loss of the YOLOv3 head and the guided-anchoring (anchor-free slot) head of ASFF.

    Args:
        anchors: the nine predefined anchors ``(w, h)`` in input pixels.
        anchor_masks: for each level, in the order of the model outputs, the indices of its
            anchors into ``anchors`` (the official order is ``((6, 7, 8), (3, 4, 5), (0, 1, 2))``
            for strides 32, 16, 8).
        num_classes: number of classes C (``raw`` has ``5 + C`` channels).
        ignore_thresh: negatives whose decoded box has IoU above this with a ground truth of the
            image get no objectness loss.
        iou_loss: ``"none"`` (plain YOLOv3), ``"iou"`` (official ``1 - IoU^2``) or ``"giou"``.
        label_smoothing: official smoothing, ``1 - 1/C`` for the true class and ``1/C`` elsewhere.
        l1_prior_grad: the L1 target ``log(gt_wh / prior_wh)`` passes its gradient to the
            predicted prior (official: True); False treats the prior as a constant.
    """

    def __init__(
        self,
        anchors: Sequence[tuple[float, float]],
        anchor_masks: Sequence[Sequence[int]],
        num_classes: int,
        ignore_thresh: float = 0.7,
        iou_loss: str = "none",
        label_smoothing: bool = False,
        l1_prior_grad: bool = True,
    ) -> None:
        super().__init__()
        self.l1_prior_grad = bool(l1_prior_grad)
        if iou_loss not in IOU_LOSSES:
            raise ValueError(f"unknown iou_loss {iou_loss!r}; expected one of {IOU_LOSSES}")
        anchor_t = torch.as_tensor([[float(w), float(h)] for w, h in anchors], dtype=torch.float32)
        level_of = torch.full((len(anchor_t),), -1, dtype=torch.long)
        slot_of = torch.full((len(anchor_t),), -1, dtype=torch.long)
        for level, mask in enumerate(anchor_masks):
            for slot, idx in enumerate(mask):
                level_of[idx] = level
                slot_of[idx] = slot
        self.register_buffer("anchors", anchor_t, persistent=False)
        self.register_buffer("level_of", level_of, persistent=False)
        self.register_buffer("slot_of", slot_of, persistent=False)
        self.anchor_masks = tuple(tuple(int(i) for i in m) for m in anchor_masks)
        self.num_classes = int(num_classes)
        self.ignore_thresh = float(ignore_thresh)
        self.iou_loss = iou_loss
        self.label_smoothing = bool(label_smoothing)

    def _gather_targets(
        self, targets: list[dict], device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Concatenate the per-image targets: XYXY boxes, labels, mixup weights, image index."""
        boxes, labels, weights, image = [], [], [], []
        for b, t in enumerate(targets):
            bx = _as_plain(t["boxes"], device, torch.float32).reshape(-1, 4)
            n = bx.shape[0]
            boxes.append(bx)
            labels.append(_as_plain(t["labels"], device, torch.long).reshape(n))
            w = t.get("weights")
            weights.append(
                torch.ones(n, device=device)
                if w is None
                else _as_plain(w, device, torch.float32).reshape(n)
            )
            image.append(torch.full((n,), b, dtype=torch.long, device=device))
        return torch.cat(boxes), torch.cat(labels), torch.cat(weights), torch.cat(image)

    def forward(
        self,
        outputs: Sequence[LevelOutput],
        targets: list[dict],
        img_size: int | tuple[int, int],
    ) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            outputs: one ``LevelOutput`` per level, in the order of ``anchor_masks``.
            targets: per image, ``boxes`` (n, 4) XYXY in input pixels, ``labels`` (n,) int64 and
                optionally ``weights`` (n,) (the mixup ratio, default 1).
            img_size: the input size, an int (square) or ``(height, width)``.

        Returns:
            Scalar tensors ``anchor``, ``iou``, ``l1``, ``obj``, ``cls`` and their sum ``total``,
            each summed over levels and divided by the batch size.
        """
        levels = self.level_losses(outputs, targets, img_size)
        batch = outputs[0].raw.shape[0]
        zero = torch.zeros((), device=outputs[0].raw.device)
        terms = dict.fromkeys(LOSS_KEYS[:-1], zero)
        for level in levels:
            terms = {k: terms[k] + level.terms[k] for k in terms}
        terms = {k: v / batch for k, v in terms.items()}
        terms["total"] = sum(terms.values(), zero)
        return terms

    def level_losses(
        self,
        outputs: Sequence[LevelOutput],
        targets: list[dict],
        img_size: int | tuple[int, int],
    ) -> list[LevelLoss]:
        """Each level's terms (summed over the batch, not divided) and target assignment.

        ``forward`` sums these; ``study analyze`` differentiates each level's total on its own.
        """
        if len(outputs) != len(self.anchor_masks):
            raise ValueError(f"expected {len(self.anchor_masks)} levels, got {len(outputs)}")
        img_h, img_w = (img_size, img_size) if isinstance(img_size, int) else img_size
        img_area = float(img_h) * float(img_w)
        device = outputs[0].raw.device
        batch = outputs[0].raw.shape[0]
        if len(targets) != batch:
            raise ValueError(f"got {len(targets)} targets for a batch of {batch}")

        gt_xyxy, gt_labels, gt_weights, gt_image = self._gather_targets(targets, device)
        gt_cxcywh = box_convert(gt_xyxy, "xyxy", "cxcywh")
        gt_wh = gt_cxcywh[:, 2:]
        # Best of the nine predefined anchors by w/h IoU (first index on ties, as np.argmax).
        anchor_ious = wh_iou(gt_wh[:, None, :], self.anchors.to(device)[None, :, :])
        best_iou, best_n = anchor_ious.max(dim=1)
        gt_level = self.level_of.to(device)[best_n]
        gt_slot = self.slot_of.to(device)[best_n]
        per_image = [torch.nonzero(gt_image == b).squeeze(1) for b in range(batch)]
        gt = _Targets(
            gt_xyxy,
            gt_cxcywh,
            gt_labels,
            gt_weights,
            gt_image,
            best_iou,
            gt_level,
            gt_slot,
            per_image,
        )
        return [self._level_loss(out, level, gt, img_area) for level, out in enumerate(outputs)]

    def _level_loss(self, out: LevelOutput, level: int, gt: _Targets, img_area: float) -> LevelLoss:
        """The five (un-normalised) loss terms of one level and its assignment."""
        raw = out.raw.float()
        prior_wh = out.anchor_wh.float()
        stride = float(out.stride)
        _, _, _, _, n_ch = raw.shape  # (B, A, H, W, 5 + C)
        if n_ch != 5 + self.num_classes:
            raise ValueError(f"raw has {n_ch} channels, expected {5 + self.num_classes}")
        device = raw.device
        zero = torch.zeros((), device=device)

        pred_cxcywh = _decode(raw, prior_wh, stride)
        obj_weight = self._ignore_weight(pred_cxcywh, gt)
        obj_target = torch.zeros_like(obj_weight)
        gt_index = torch.full(raw.shape[:4], -1, dtype=torch.long, device=device)

        sel = torch.nonzero(gt.level == level).squeeze(1)
        # 0 * sum keeps every level's guide_wh in the graph (DDP needs a gradient for it).
        anchor0 = prior_wh.sum() * 0.0 if prior_wh.requires_grad else zero
        terms = {"anchor": anchor0, "iou": zero, "l1": zero, "cls": zero}
        if sel.numel():
            pos, shape_loss = self._assign(out.anchor_free, prior_wh, stride, gt, sel, raw.shape)
            if shape_loss is not None:
                terms["anchor"] = shape_loss
            scale = 2.0 - pos.wh[:, 0] * pos.wh[:, 1] / img_area

            obj_target[pos.b, pos.slot, pos.j, pos.i] = 1.0
            gt_index[pos.b, pos.slot, pos.j, pos.i] = pos.k
            obj_weight[pos.b, pos.slot, pos.j, pos.i] = gt.weights[pos.k]

            pos_raw = raw[pos.b, pos.slot, pos.j, pos.i]
            terms["l1"] = self._l1_term(pos_raw, prior_wh, pos, stride, scale)
            if self.iou_loss != "none":
                terms["iou"] = self._iou_term(pred_cxcywh, pos, gt.xyxy, scale)
            terms["cls"] = self._cls_term(pos_raw, gt.labels[pos.k])

        terms["obj"] = (
            obj_weight
            * F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="none")
        ).sum()
        return LevelLoss(terms, obj_target, obj_weight, gt_index)

    def _ignore_weight(self, pred_cxcywh: Tensor, gt: _Targets) -> Tensor:
        """Objectness weights ``(B, A, H, W)``: 0 for predictions whose decoded box already
        overlaps a ground truth of their image by more than ``ignore_thresh``, else 1."""
        obj_weight = torch.ones(pred_cxcywh.shape[:4], device=pred_cxcywh.device)
        pred_xyxy_det = box_convert(pred_cxcywh.detach(), "cxcywh", "xyxy")
        for b, idx in enumerate(gt.per_image):
            if idx.numel():
                best = box_iou(pred_xyxy_det[b].reshape(-1, 4), gt.xyxy[idx]).max(dim=1).values
                obj_weight[b] = (best <= self.ignore_thresh).reshape(obj_weight.shape[1:]).float()
        return obj_weight

    def _assign(
        self,
        anchor_free: bool,
        prior_wh: Tensor,
        stride: float,
        gt: _Targets,
        sel: Tensor,
        shape: tuple[int, ...],
    ) -> tuple[_Positives, Tensor | None]:
        """Place the targets ``sel`` of this level: their cell, their slot (with guided anchoring
        the anchor-free slot when its prior fits better than the best predefined anchor) and, as
        in the official loop, the last target wins a shared slot. Also returns the shape loss
        (None without guided anchoring). ``shape`` is the level's ``(B, A, H, W, ...)``."""
        _, n_slots, grid_h, grid_w = shape[:4]
        b = gt.image[sel]
        cx, cy = gt.cxcywh[sel, 0], gt.cxcywh[sel, 1]
        i = (cx / stride).long().clamp(0, grid_w - 1)
        j = (cy / stride).long().clamp(0, grid_h - 1)
        a = gt.slot[sel]
        wh = gt.cxcywh[sel, 2:]
        free = n_slots - 1
        shape_loss = None
        if anchor_free:
            free_iou = wh_iou(wh, prior_wh[b, free, j, i].detach())
            aa = torch.where(free_iou > gt.best_iou[sel], torch.full_like(a, free), a)
            shape_loss = _shape_loss(prior_wh, (b, a, j, i), wh, free, shape[:4])
        else:
            aa = a

        keep = last_unique(((b * n_slots + aa) * grid_h + j) * grid_w + i)
        pos = _Positives(
            b[keep], aa[keep], j[keep], i[keep], sel[keep], cx[keep], cy[keep], wh[keep]
        )
        return pos, shape_loss

    def _l1_term(
        self, pos_raw: Tensor, prior_wh: Tensor, pos: _Positives, stride: float, scale: Tensor
    ) -> Tensor:
        """BCE on the in-cell centre offset plus L1 on ``log(gt_wh / prior_wh)``, size-weighted."""
        xy_target = torch.stack((pos.cx / stride - pos.i, pos.cy / stride - pos.j), dim=1)
        prior = prior_wh[pos.b, pos.slot, pos.j, pos.i]
        wh_target = torch.log(pos.wh / (prior if self.l1_prior_grad else prior.detach()) + 1e-12)
        loss_xy = F.binary_cross_entropy_with_logits(pos_raw[:, :2], xy_target, reduction="none")
        loss_wh = (pos_raw[:, 2:4] - wh_target).abs()
        return (scale[:, None] * (loss_xy + loss_wh)).sum()

    def _iou_term(
        self, pred_cxcywh: Tensor, pos: _Positives, gt_xyxy: Tensor, scale: Tensor
    ) -> Tensor:
        """Size-weighted ``1 - IoU^2`` (``iou_loss="iou"``) or GIoU loss of the positives."""
        pos_xyxy = box_convert(pred_cxcywh[pos.b, pos.slot, pos.j, pos.i], "cxcywh", "xyxy")
        if self.iou_loss == "iou":
            box_loss = 1.0 - paired_iou(pos_xyxy, gt_xyxy[pos.k]) ** 2
        else:
            box_loss = generalized_box_iou_loss(pos_xyxy, gt_xyxy[pos.k], reduction="none")
        return (scale * box_loss).sum()

    def _cls_term(self, pos_raw: Tensor, labels: Tensor) -> Tensor:
        """Summed BCE-with-logits over classes at the positives (optionally smoothed)."""
        n, c = len(labels), self.num_classes
        if self.label_smoothing:
            cls_target = torch.full((n, c), 1.0 / c, device=pos_raw.device)
            cls_target[torch.arange(n, device=pos_raw.device), labels] = 1.0 - 1.0 / c
        else:
            cls_target = F.one_hot(labels, c).float()
        return F.binary_cross_entropy_with_logits(pos_raw[:, 5:], cls_target, reduction="sum")


def build_criterion(model: nn.Module, tc: dict) -> YOLOLoss:
    """The loss of ``model`` with the settings of an experiment's ``train`` section."""
    return YOLOLoss(
        model.anchors,
        model.anchor_masks,
        model.num_classes,
        tc["ignore_thresh"],
        tc["iou_loss"],
        tc["label_smoothing"],
        tc["l1_prior_grad"],
    )
