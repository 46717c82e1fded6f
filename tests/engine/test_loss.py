"""Tests for study.engine.loss.YOLOLoss against hand-computed values (64-pixel input, 3 classes)."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
from torch import Tensor
from torchvision import tv_tensors

from study.anchors import ANCHOR_MASKS, STRIDES, YOLOV3_ANCHORS
from study.engine.loss import YOLOLoss, last_unique, wh_iou

try:
    from study.models.outputs import LevelOutput
except ImportError:  # pragma: no cover - the lead's module may not exist yet

    class LevelOutput(NamedTuple):  # type: ignore[no-redef]
        raw: Tensor
        anchor_wh: Tensor
        stride: int
        anchor_free: bool


IMG = 64
C = 3
NEG = -30.0  # an objectness logit whose BCE against 0 is ~1e-13
# The hand-made target: a 30x61 box centred at (20, 36) -> anchor 3 -> level 1 (stride 16),
# cell i=1, j=2, slot 0, in-cell offsets (0.25, 0.25).
BOX = (20.0, 36.0, 30.0, 61.0)
LEVEL, CELL_J, CELL_I, SLOT = 1, 2, 1, 0


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def bce(x: float, t: float) -> float:
    """BCE-with-logits by hand."""
    s = 1.0 / (1.0 + math.exp(-x))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def xyxy(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def target(*boxes: tuple[float, float, float, float], labels=None, weights=None) -> dict:
    n = len(boxes)
    return {
        "boxes": torch.tensor([xyxy(*b) for b in boxes], dtype=torch.float32).reshape(n, 4),
        "labels": torch.tensor(labels if labels is not None else [0] * n, dtype=torch.long),
        "weights": torch.tensor(weights if weights is not None else [1.0] * n),
    }


def make_outputs(batch: int = 1, anchor_free: bool = False, grad: bool = False) -> list:
    """Zero raw logits with every objectness at NEG; fixed (or GA-like) priors."""
    outs = []
    n_slots = 4 if anchor_free else 3
    for stride, mask in zip(STRIDES, ANCHOR_MASKS, strict=True):
        g = IMG // stride
        raw = torch.zeros(batch, n_slots, g, g, 5 + C)
        raw[..., 4] = NEG
        wh = torch.zeros(batch, n_slots, g, g, 2)
        for s, idx in enumerate(mask):
            wh[:, s] = torch.tensor(YOLOV3_ANCHORS[idx], dtype=torch.float32)
        if anchor_free:
            wh[:, 3] = 4.0 * stride
        outs.append(
            LevelOutput(raw.requires_grad_(grad), wh.requires_grad_(grad), stride, anchor_free)
        )
    return outs


def set_perfect(outs: list, b: int = 0, slot: int = SLOT, label: int = 0) -> Tensor:
    """Make the prediction at the hand-made target's cell/slot exactly the box."""
    raw = outs[LEVEL].raw
    v = raw.data[b, slot, CELL_J, CELL_I]
    prior = outs[LEVEL].anchor_wh.data[b, slot, CELL_J, CELL_I]
    v[0] = v[1] = logit(0.25)
    v[2] = math.log(BOX[2] / float(prior[0]))
    v[3] = math.log(BOX[3] / float(prior[1]))
    v[4] = 30.0
    v[5:] = -30.0
    v[5 + label] = 30.0
    return v


def loss_fn(**kw) -> YOLOLoss:
    kw.setdefault("iou_loss", "iou")
    return YOLOLoss(YOLOV3_ANCHORS, ANCHOR_MASKS, C, **kw)


SCALE = 2.0 - BOX[2] * BOX[3] / (IMG * IMG)
H25 = bce(logit(0.25), 0.25)  # the xy BCE at a perfect prediction is the entropy of 0.25


def test_helpers() -> None:
    assert wh_iou(torch.tensor([30.0, 61.0]), torch.tensor([30.0, 61.0])) == pytest.approx(1.0)
    ious = wh_iou(torch.tensor([[30.0, 61.0]]), torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32))
    assert int(ious.argmax()) == 3
    assert last_unique(torch.tensor([5, 2, 5, 7, 2])).sort().values.tolist() == [2, 3, 4]
    assert last_unique(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_perfect_prediction_and_single_negative() -> None:
    outs = make_outputs(batch=2)
    set_perfect(outs)
    tgts = [target(BOX), target()]
    out = loss_fn()(outs, tgts, IMG)
    assert set(out) == {"anchor", "iou", "l1", "obj", "cls", "total"}
    assert all(v.dim() == 0 for v in out.values())
    # Only the positive contributes: xy BCE = 2 * H(0.25) * scale, wh L1 = 0, IoU = 1.
    assert out["l1"].item() == pytest.approx(2 * H25 * SCALE / 2, rel=1e-5)
    for k in ("anchor", "iou", "obj", "cls"):
        assert out[k].item() == pytest.approx(0.0, abs=1e-9)
    assert out["total"].item() == pytest.approx(out["l1"].item(), rel=1e-6)
    # A negative elsewhere (level 0, cell (0,0), slot 1; IoU with the gt ~0.06) at logit 0.
    outs[0].raw.data[0, 1, 0, 0, 4] = 0.0
    out2 = loss_fn()(outs, tgts, IMG)
    assert (out2["obj"] - out["obj"]).item() == pytest.approx(math.log(2) / 2, rel=1e-5)


def test_cls_label_smoothing_by_hand() -> None:
    outs = make_outputs()
    v = set_perfect(outs)
    logits = [0.5, -1.0, 2.0]
    v[5:] = torch.tensor(logits)
    tgts = [target(BOX, labels=[2])]
    smooth = loss_fn(label_smoothing=True)(outs, tgts, IMG)["cls"].item()
    expected = sum(bce(x, t) for x, t in zip(logits, [1 / 3, 1 / 3, 2 / 3], strict=True))
    assert smooth == pytest.approx(expected, rel=1e-5)
    plain = loss_fn()(outs, tgts, IMG)["cls"].item()
    assert plain == pytest.approx(sum(bce(x, t) for x, t in zip(logits, [0, 0, 1], strict=True)))


def _shifted_outputs() -> list:
    """The positive prediction shifted right by 4 px (offset 0.5 instead of 0.25)."""
    outs = make_outputs()
    v = set_perfect(outs)
    v[0] = 0.0  # sigmoid 0.5 -> cx = 24
    return outs


def test_iou_term_closed_form() -> None:
    out = loss_fn(iou_loss="iou")(_shifted_outputs(), [target(BOX)], IMG)
    iou = 26.0 / 34.0  # 30-wide boxes 4 px apart, same height
    assert out["iou"].item() == pytest.approx((1 - iou**2) * SCALE, rel=1e-5)
    # The l1 term sees the new offset: BCE(0, 0.25) + H(0.25) for xy, wh still exact.
    assert out["l1"].item() == pytest.approx((bce(0.0, 0.25) + H25) * SCALE, rel=1e-5)


def test_giou_iou_none_differ() -> None:
    outs, tgts = _shifted_outputs(), [target(BOX)]
    iou = loss_fn(iou_loss="iou")(outs, tgts, IMG)
    giou = loss_fn(iou_loss="giou")(outs, tgts, IMG)
    none = loss_fn(iou_loss="none")(outs, tgts, IMG)
    # Same height, enclosing box = union here, so GIoU = IoU: loss 1 - IoU (not squared).
    assert giou["iou"].item() == pytest.approx((1 - 26.0 / 34.0) * SCALE, rel=1e-5)
    assert giou["iou"].item() != pytest.approx(iou["iou"].item())
    assert none["iou"].item() == 0.0
    assert none["l1"].item() == pytest.approx(iou["l1"].item())
    with pytest.raises(ValueError):
        loss_fn(iou_loss="diou")


@pytest.mark.parametrize(("thresh", "ignored"), [(0.7, True), (0.9, False)])
def test_ignore_threshold(thresh: float, ignored: bool) -> None:
    outs = make_outputs()
    set_perfect(outs)
    # Slot 1 (anchor 62x45) of the same cell decodes to 30 x 48.8 at the gt centre: IoU 0.8.
    v = outs[LEVEL].raw.data[0, 1, CELL_J, CELL_I]
    v[0] = v[1] = logit(0.25)
    v[2] = math.log(30.0 / 62.0)
    v[3] = math.log(0.8 * 61.0 / 45.0)
    v[4] = 0.0
    obj = loss_fn(ignore_thresh=thresh)(outs, [target(BOX)], IMG)["obj"].item()
    assert obj == pytest.approx(0.0 if ignored else math.log(2), abs=1e-6)


@pytest.mark.parametrize(("free_wh", "slot"), [((28.0, 64.0), 3), ((1.0, 1.0), 0)])
def test_anchor_free_assignment(free_wh: tuple[float, float], slot: int) -> None:
    gt = (20.0, 36.0, 28.0, 64.0)  # best predefined anchor 3, IoU ~0.892 < 1
    outs = make_outputs(anchor_free=True, grad=True)
    lvl = outs[LEVEL]
    lvl.raw.data[..., 4] = 0.0
    lvl.anchor_wh.data[0, 3, CELL_J, CELL_I] = torch.tensor(free_wh)
    out = loss_fn()(outs, [target(gt)], IMG)
    out["total"].backward()
    obj_grad = lvl.raw.grad[0, :, CELL_J, CELL_I, 4]
    assert obj_grad[slot].item() == pytest.approx(-0.5)  # sigmoid(0) - 1 at the positive
    assert (lvl.raw.grad[..., 4] < 0).sum().item() == 1
    cls_grad = lvl.raw.grad[..., 5:].abs().sum(-1)
    assert (
        cls_grad[0, slot, CELL_J, CELL_I] > 0
        and cls_grad.sum() == cls_grad[0, slot, CELL_J, CELL_I]
    )
    # The shape loss covers slot 0 (anchor 30x61) and the anchor-free slot, against 28x64.
    a_iou = wh_iou(torch.tensor([30.0, 61.0]), torch.tensor([28.0, 64.0])).item()
    f_iou = wh_iou(torch.tensor(free_wh), torch.tensor([28.0, 64.0])).item()
    assert out["anchor"].item() == pytest.approx((1 - a_iou**2) + (1 - f_iou**2), rel=1e-5)
    ga_grad = lvl.anchor_wh.grad[0, :, CELL_J, CELL_I].abs().sum(-1)
    assert ga_grad[0] > 0 and ga_grad[3] > 0 and ga_grad[1] == 0 and ga_grad[2] == 0


def test_plain_head_has_no_anchor_loss() -> None:
    outs = make_outputs()
    out = loss_fn()(outs, [target((20.0, 36.0, 28.0, 64.0))], IMG)
    assert out["anchor"].item() == 0.0


def test_mixup_weight_scales_positive_obj() -> None:
    outs = make_outputs()
    set_perfect(outs)[4] = 0.0
    full = loss_fn()(outs, [target(BOX, weights=[1.0])], IMG)["obj"].item()
    part = loss_fn()(outs, [target(BOX, weights=[0.3])], IMG)["obj"].item()
    assert full == pytest.approx(math.log(2), rel=1e-5)
    assert part == pytest.approx(0.3 * full, rel=1e-5)


def test_gradients_finite_and_class_grads_only_at_positives() -> None:
    torch.manual_seed(0)
    outs = make_outputs(batch=2, anchor_free=True)
    outs = [
        LevelOutput(
            (o.raw.detach() * 0 + 0.5 * torch.randn_like(o.raw)).requires_grad_(),
            (
                o.anchor_wh.detach() * torch.exp(0.3 * torch.randn_like(o.anchor_wh))
            ).requires_grad_(),
            o.stride,
            o.anchor_free,
        )
        for o in outs
    ]
    tgts = [
        target(BOX, (40.0, 20.0, 10.0, 14.0), (32.0, 32.0, 60.0, 50.0), labels=[0, 1, 2]),
        target((10.0, 50.0, 16.0, 12.0), labels=[1]),
    ]
    out = loss_fn(label_smoothing=True)(outs, tgts, IMG)
    out["total"].backward()
    n_pos = 0
    for o in outs:
        assert torch.isfinite(o.raw.grad).all() and torch.isfinite(o.anchor_wh.grad).all()
        pos = o.raw.grad[..., 5:].abs().sum(-1) > 0
        # Positives are exactly where the objectness gradient is negative (target 1).
        assert torch.equal(pos, o.raw.grad[..., 4] < 0)
        n_pos += int(pos.sum())
    assert n_pos == 4
    # No target on the stride-32 level: its guide still gets an (all-zero) gradient, so that
    # DistributedDataParallel sees every parameter used on every rank.
    assert outs[0].anchor_wh.grad is not None and not outs[0].anchor_wh.grad.any()
    assert all(o.anchor_wh.grad.abs().sum() > 0 for o in outs[1:])
    assert out["anchor"].item() > 0 and out["iou"].item() > 0


def test_empty_targets() -> None:
    outs = make_outputs(batch=2, anchor_free=True)
    set_perfect(outs)
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.long),
        "weights": torch.zeros(0),
    }
    out = loss_fn()(outs, [target(BOX), empty], IMG)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["l1"].item() == pytest.approx(2 * H25 * SCALE / 2, rel=1e-5)
    # Both images empty: only objectness negatives, which are all BCE(NEG, 0) / batch.
    for o in outs:
        o.raw.data[..., 4] = -2.0
    out = loss_fn()(outs, [empty, empty], IMG)
    n_cells = sum(o.raw[..., 4].numel() for o in outs)
    assert out["obj"].item() == pytest.approx(n_cells * bce(-2.0, 0.0) / 2, rel=1e-5)
    assert out["total"].item() == pytest.approx(out["obj"].item())
    for k in ("anchor", "iou", "l1", "cls"):
        assert out[k].item() == 0.0


def test_later_target_wins_and_tv_tensor_input() -> None:
    outs = make_outputs()
    v = set_perfect(outs)
    v[5:] = torch.tensor([0.5, -1.0, 2.0])
    other = (22.0, 38.0, 29.0, 60.0)  # same cell and slot as BOX
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([xyxy(*other), xyxy(*BOX)]), format="XYXY", canvas_size=(IMG, IMG)
    )
    tgt = {"boxes": boxes, "labels": torch.tensor([0, 2])}  # no weights: default 1
    out = loss_fn()(outs, [tgt], IMG)
    ref = loss_fn()(outs, [target(BOX, labels=[2])], IMG)
    assert out["cls"].item() == pytest.approx(ref["cls"].item())
    assert out["l1"].item() == pytest.approx(ref["l1"].item())
    # A (height, width) tuple gives the same result for a square input.
    tup = loss_fn()(outs, [tgt], (IMG, IMG))
    assert tup["total"].item() == pytest.approx(out["total"].item())


def test_level_losses_sum_to_the_loss_and_name_the_assignment() -> None:
    """``level_losses`` (what ``study analyze`` differentiates level by level) adds up to the
    loss, and its assignment marks the hand-made target's cell with the target's index."""
    crit = loss_fn()
    outs = make_outputs(batch=2)
    set_perfect(outs, b=1)
    targets = [target((50.0, 50.0, 8.0, 8.0)), target(BOX, (40.0, 20.0, 12.0, 10.0))]
    levels = crit.level_losses(outs, targets, IMG)
    total = crit(outs, targets, IMG)
    for key in ("anchor", "iou", "l1", "obj", "cls"):
        summed = sum(level.terms[key] for level in levels) / 2
        assert float(summed) == pytest.approx(float(total[key]), rel=1e-6, abs=1e-9)
    # Targets are concatenated over the batch: index 1 is image 1's first box (BOX).
    at = levels[LEVEL]
    assert int(at.gt_index[1, SLOT, CELL_J, CELL_I]) == 1
    assert float(at.obj_target[1, SLOT, CELL_J, CELL_I]) == 1.0
    for level in levels:
        assert ((level.gt_index >= 0) == (level.obj_target == 1)).all()
    assigned = sorted(int(i) for level in levels for i in level.gt_index[level.gt_index >= 0])
    assert assigned == [0, 1, 2]  # every target is positive at exactly one level


@pytest.mark.parametrize("prior_grad", [True, False])
def test_l1_target_passes_its_gradient_to_the_prior_as_the_official_head(prior_grad) -> None:
    # Official models/yolov3_head.py: l1_target = log(truth_w / pred_anchors[..., 2]) with
    # pred_anchors not detached, so the L1 term also trains the guided-anchoring shape branch.
    outs = make_outputs(grad=True)
    raw = outs[LEVEL].raw
    raw.data[0, SLOT, CELL_J, CELL_I, 2:4] = 0.5  # log(gt / prior) is 0: the prediction is off
    out = loss_fn(iou_loss="none", l1_prior_grad=prior_grad)(outs, [target(BOX)], IMG)
    out["l1"].backward()
    grad = outs[LEVEL].anchor_wh.grad
    if not prior_grad:
        assert grad is None or not grad.any()
        return
    # d/dp |r - log(g / p)| = sign(r - log(g / p)) / p, times the size weight
    expect = torch.tensor([SCALE / BOX[2], SCALE / BOX[3]])
    torch.testing.assert_close(grad[0, SLOT, CELL_J, CELL_I], expect)
    grad[0, SLOT, CELL_J, CELL_I] = 0
    assert not grad.any()
    assert loss_fn().l1_prior_grad is True  # the default follows the official code
