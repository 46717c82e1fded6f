"""Gradient consistency (study/analysis/gradients.py) on a hand-built two-level fusion whose
gradients, conflict shares and cosines are known in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import tv_tensors

from study.analysis.gradients import (
    BACKGROUND,
    IGNORED,
    POSITIVE,
    ConflictSamples,
    LevelLabels,
    agreement,
    binned_by_weight,
    box_areas,
    conflict_at_positives,
    level_gradients,
    object_areas,
    resample,
    size_bucket,
    summarize,
)
from study.engine.loss import LevelLoss

# Level 0: a 2x2 grid (stride 2); level 1: a 4x4 grid (stride 1); one channel, one image.
A0, B0 = 0.8, 0.2  # output level 0 = A0 * x0 + B0 * avgpool(x1)
A1, B1 = 0.3, 0.7  # output level 1 = A1 * up(x0) + B1 * x1
T0 = torch.tensor([[2.0, -1.0], [0.5, 3.0]])  # L^0 = sum(T0 * y0)
T1 = torch.arange(16, dtype=torch.float32).reshape(4, 4) / 4 - 1.5  # L^1 = sum(T1 * y1)


class ToyFusion(nn.Module):
    """Two levels, fixed weights; ``features``/``fuse``/``predict_levels`` like the Detector."""

    def fuse(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        x0, x1 = feats
        y0 = A0 * x0 + B0 * F.avg_pool2d(x1, 2)
        y1 = A1 * F.interpolate(x0, scale_factor=2, mode="nearest") + B1 * x1
        w0 = torch.tensor([A0, B0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
        w1 = torch.tensor([A1, B1]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
        return [y0, y1], [w0, w1]

    def predict_levels(self, fused: list[Tensor]) -> list[Tensor]:
        return fused


@dataclass
class ToyLoss:
    """Linear per-level losses with a fixed assignment (``label`` maps per level)."""

    labels: list[Tensor]  # (H, W) in BACKGROUND / IGNORED / POSITIVE

    def level_losses(self, outputs, targets, img_size) -> list[LevelLoss]:  # noqa: ANN001
        out = []
        for y, t, lab in zip(outputs, (T0, T1), self.labels, strict=True):
            obj_target = (lab == POSITIVE).float()[None, None]
            obj_weight = (lab != IGNORED).float()[None, None]
            gt_index = torch.where(lab == POSITIVE, 0, -1)[None, None]
            out.append(LevelLoss({"total": (y[0, 0] * t).sum()}, obj_target, obj_weight, gt_index))
        return out


def feats() -> list[Tensor]:
    torch.manual_seed(0)
    return [torch.randn(1, 1, 2, 2), torch.randn(1, 1, 4, 4)]


def labels(pos0: tuple[int, int] = (0, 0), pos1: tuple[int, int] = (3, 3)) -> list[Tensor]:
    lab0 = torch.full((2, 2), BACKGROUND)
    lab1 = torch.full((4, 4), BACKGROUND)
    lab0[pos0] = POSITIVE
    lab1[pos1] = POSITIVE
    return [lab0, lab1]


def measured(label_maps: list[Tensor]) -> dict[str, np.ndarray]:
    p = level_gradients(ToyFusion(), ToyLoss(label_maps), feats(), [], (4, 4))
    samples = ConflictSamples()
    conflict_at_positives(p, torch.tensor([50.0**2]), samples)
    return samples.arrays()


def closed_form() -> dict[int, tuple[float, float, float, float]]:
    """level -> (share, cosine, w_others, w_own) at its positive (level 0 at (0, 0), level 1 at
    (3, 3)). dL^1/dx^0 sums T1 over the upsampled block; dL^0/dx^1 spreads T0 / 4."""
    own0, other0 = A0 * T0[0, 0], A1 * T1[0:2, 0:2].sum()
    own1, other1 = B1 * T1[3, 3], B0 * T0[1, 1] / 4
    out = {}
    for k, (own, other, w_oth, w_own) in enumerate(
        ((own0, other0, A1, A0), (own1, other1, B0, B1))
    ):
        share = abs(other) / (abs(own) + abs(other))
        out[k] = (float(share), float(torch.sign(own * other)), w_oth, w_own)
    return out


def test_gradients_match_the_closed_form() -> None:
    p = level_gradients(ToyFusion(), ToyLoss(labels()), feats(), [], (4, 4))
    torch.testing.assert_close(p.grads[0][0][0, 0], A0 * T0)
    torch.testing.assert_close(p.grads[1][0][0, 0], A1 * F.avg_pool2d(T1[None, None], 2)[0, 0] * 4)
    torch.testing.assert_close(
        p.grads[0][1][0, 0], B0 * T0.repeat_interleave(2, 0).repeat_interleave(2, 1) / 4
    )
    torch.testing.assert_close(p.grads[1][1][0, 0], B1 * T1)


def test_conflict_share_cosine_and_weights_match_the_closed_form() -> None:
    got = measured(labels())
    want = closed_form()
    assert got["level"].tolist() == [0.0, 1.0]
    for k in (0, 1):
        share, cosine, w_oth, w_own = want[k]
        assert got["share"][k] == pytest.approx(share, rel=1e-6)
        assert got["cosine"][k] == pytest.approx(cosine, rel=1e-6)
        assert got["w_others"][k] == pytest.approx(w_oth, rel=1e-6)
        assert got["w_own"][k] == pytest.approx(w_own, rel=1e-6)
    assert got["bucket"].tolist() == [1.0, 1.0]  # a 50 x 50 object is medium


@pytest.mark.parametrize(
    "shuffled",
    [
        labels(pos0=(1, 1), pos1=(0, 0)),  # positives moved
        labels(pos0=(1, 0), pos1=(0, 3)),
        [
            labels()[1][::2, ::2].clone(),
            labels()[0].repeat_interleave(2, 0).repeat_interleave(2, 1),
        ],
    ],
)
def test_shuffled_labels_do_not_give_the_closed_form(shuffled: list[Tensor]) -> None:
    got, want = measured(shuffled), closed_form()
    expected = np.array([want[0][0], want[1][0]])
    assert got["share"].shape != expected.shape or not np.allclose(
        got["share"], expected, rtol=1e-3
    )


def test_a_location_background_elsewhere_only() -> None:
    """A level-0 positive whose block is positive (or ignored) at level 1 is not a conflict
    location; nor is the level-1 positive inside it."""
    lab0, lab1 = labels()
    lab1[1, 1] = IGNORED  # inside level 0's positive cell (0, 0)
    got = measured([lab0, lab1])
    assert got["level"].tolist() == [1.0]
    lab1[1, 1] = POSITIVE  # now both levels are positive there: only (3, 3) is counted
    got = measured([lab0, lab1])
    assert got["level"].tolist() == [1.0]
    assert got["share"][0] == pytest.approx(closed_form()[1][0], rel=1e-6)


def test_resample_between_grids() -> None:
    x = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    up = resample(x, (4, 4), "max")
    assert up.shape == (1, 4, 4) and up[0, 1, 1] == 0 and up[0, 0, 3] == 1 and up[0, 3, 0] == 2
    assert torch.equal(resample(up, (2, 2), "max"), x)
    assert torch.equal(resample(up, (2, 2), "mean"), x)
    assert torch.equal(resample(x, (2, 2), "max"), x)


def test_labels_from_the_loss_prefer_positive_over_ignored() -> None:
    obj_target = torch.zeros(1, 3, 2, 2)
    obj_weight = torch.ones(1, 3, 2, 2)
    gt_index = torch.full((1, 3, 2, 2), -1)
    obj_target[0, 1, 0, 0], gt_index[0, 1, 0, 0] = 1, 1
    obj_weight[0, 2, 0, 0] = 0  # another slot of the positive cell is ignored
    obj_weight[0, 0, 1, 1] = 0
    lab = LevelLabels.from_loss(
        LevelLoss({}, obj_target, obj_weight, gt_index), torch.tensor([10.0, 99.0])
    )
    assert lab.label[0].tolist() == [[POSITIVE, BACKGROUND], [BACKGROUND, IGNORED]]
    assert lab.area[0].tolist() == [[99.0, 0.0], [0.0, 0.0]]
    assert size_bucket(torch.tensor([10.0, 32.0**2, 96.0**2])).tolist() == [0, 1, 2]


def test_summaries_by_bucket_and_weight_bins() -> None:
    samples = {
        "level": np.zeros(4),
        "bucket": np.array([0.0, 0.0, 2.0, 2.0]),
        "share": np.array([0.1, 0.3, 0.8, np.nan]),
        "cosine": np.array([-1.0, 1.0, -1.0, np.nan]),
        "w_others": np.array([0.05, 0.15, 0.95, 0.5]),
        "w_own": np.array([0.9, 0.8, 0.1, 0.5]),
    }
    rows = {r["bucket"]: r for r in summarize(samples)}
    assert rows["all"]["locations"] == 4 and rows["all"]["share_mean"] == pytest.approx(0.4)
    assert rows["small"]["share_mean"] == pytest.approx(0.2)
    assert rows["medium"]["locations"] == 0 and np.isnan(rows["medium"]["share_mean"])
    assert rows["large"]["share_median"] == pytest.approx(0.8)
    bins = binned_by_weight(samples)
    assert [(b["w_low"], b["locations"]) for b in bins] == [
        (0.0, 1),
        (pytest.approx(0.1), 1),
        (pytest.approx(0.9), 1),
    ]


def test_agreement_reads_the_weights_at_the_assigned_centre() -> None:
    gt_index = [torch.full((1, 1, 2, 2), -1), torch.full((1, 1, 4, 4), -1)]
    gt_index[0][0, 0, 1, 0] = 0  # object 0 at level 0 (stride 2), cell (j=1, i=0)
    gt_index[1][0, 0, 0, 3] = 1  # object 1 at level 1 (stride 1), cell (j=0, i=3)
    levels = [LevelLoss({}, (g >= 0).float(), torch.ones_like(g).float(), g) for g in gt_index]
    w0 = torch.zeros(1, 2, 2, 2)
    w0[0, 0] = 0.9
    w0[0, 1] = 0.1
    w1 = torch.zeros(1, 2, 4, 4)
    w1[0, 0] = 0.6  # level 1 prefers input level 0: disagreement
    w1[0, 1] = 0.4
    targets = [{"boxes": torch.tensor([[0.0, 2.0, 2.0, 4.0], [3.0, 0.0, 4.0, 1.0]])}]
    records = agreement(levels, [w0, w1], targets, torch.tensor([4.0, 1.0e4]), (2, 1))
    assert [(k, b, top) for k, b, top, _ in records] == [(0, 0, 0), (1, 2, 0)]
    assert records[0][3].tolist() == pytest.approx([0.9, 0.1])


def test_object_areas_are_in_original_pixels() -> None:
    """Boxes in the resized image, ``info.scale`` = resized / original per axis: the area of a
    20 x 10 box at scale (0.5, 0.25) is 40 x 40 original pixels."""

    def target(boxes: list[list[float]], scale: tuple[float, float]) -> dict:
        box = tv_tensors.BoundingBoxes(
            torch.tensor(boxes).reshape(-1, 4), format="XYXY", canvas_size=(64, 64)
        )
        return {"boxes": box, "info": {"scale": scale}}

    first = target([[0.0, 0.0, 20.0, 10.0], [4.0, 4.0, 8.0, 6.0]], (0.5, 0.25))
    second = target([[10.0, 10.0, 60.0, 60.0]], (1.0, 1.0))
    empty = target([], (2.0, 2.0))
    assert box_areas(first).tolist() == [1600.0, 64.0]
    areas = object_areas([first, empty, second], torch.device("cpu"))
    assert areas.tolist() == [1600.0, 64.0, 2500.0]
    assert size_bucket(areas).tolist() == [1, 0, 1]
    assert object_areas([], torch.device("cpu")).shape == (0,)
