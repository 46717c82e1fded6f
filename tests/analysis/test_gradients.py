"""Gradient consistency (study/analysis/gradients.py) on a hand-built two-level fusion whose
gradients and measures are known in closed form.

The toy is as general as the measure needs: several channels, softmax weights computed from the
resized inputs (so the full gradient has a term through the weights that the detached one lacks)
and a 3x3 head convolution (a location's gradient gathers its neighbours' losses). The closed
form is written without autograd: the head's adjoint (``conv_transpose2d``), the softmax's
derivative and the resizing's adjoints (block sums and spreads)."""

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
    POSITIVE,
    ConflictSamples,
    LevelLabels,
    agreement,
    assigned_labels,
    binned_by_weight,
    box_areas,
    conflict_at_positives,
    level_gradients,
    object_areas,
    object_levels,
    resample,
    size_bucket,
    summarize,
)
from study.engine.loss import LevelLoss, YOLOLoss
from study.models.fusions.resize import LevelResize

# Level 0: a 4x4 grid (stride 2); level 1: an 8x8 grid (stride 1); C channels, one image.
C = 3
SIZES = ((4, 4), (8, 8))
gen = torch.Generator().manual_seed(0)
# The weights' logits at output level k for input n: a[k][n] . (input n brought to level k)
A = torch.randn(2, 2, C, generator=gen)
K = torch.randn(2, 2, C, 3, 3, generator=gen) / 3  # the head's 3x3 conv per level (2 outputs)
T = [torch.randn(2, *SIZES[0], generator=gen), torch.randn(2, *SIZES[1], generator=gen)]


def bring(n: int, k: int, x: Tensor) -> Tensor:
    """Input level n's map at level k: average pooling down, nearest upsampling up."""
    if n == k:
        return x
    return F.avg_pool2d(x, 2) if n > k else F.interpolate(x, scale_factor=2, mode="nearest")


class ToyFusion(LevelResize):
    """Two levels, input-dependent softmax weights; ``fuse``/``predict_levels`` like the
    Detector. A LevelResize, so that ``weights_detached`` switches its ``detach_weights``."""

    def __init__(self) -> None:
        nn.Module.__init__(self)

    def fuse(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        fused, weights = [], []
        for k in range(2):
            r = [bring(n, k, x) for n, x in enumerate(feats)]
            logits = torch.cat([(A[k, n].view(1, C, 1, 1) * r[n]).sum(1, True) for n in (0, 1)], 1)
            w = logits.softmax(1)
            wd = w.detach() if self.detach_weights else w
            fused.append(sum(wd[:, n : n + 1] * r[n] for n in (0, 1)))
            weights.append(w)
        return fused, weights

    def predict_levels(self, fused: list[Tensor]) -> list[Tensor]:
        return [F.conv2d(y, K[k], padding=1) for k, y in enumerate(fused)]


@dataclass
class ToyLoss:
    """Linear per-level losses L^k = sum(T_k * head_k(y_k))."""

    def level_losses(self, outputs, targets, img_size) -> list[LevelLoss]:  # noqa: ANN001
        empty = torch.zeros(0)
        return [
            LevelLoss({"total": (out[0] * t).sum()}, empty, empty, empty)
            for out, t in zip(outputs, T, strict=True)
        ]


def feats() -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, C, *SIZES[0], generator=g), torch.randn(1, C, *SIZES[1], generator=g)]


def labels(pos0=((0, 0),), pos1=((7, 7),), area: float = 50.0**2) -> list[LevelLabels]:
    out = []
    for size, positives in zip(SIZES, (pos0, pos1), strict=True):
        lab = torch.full((1, *size), BACKGROUND)
        for j, i in positives:
            lab[0, j, i] = POSITIVE
        out.append(LevelLabels(lab, (lab == POSITIVE).float() * area))
    return out


def measured(label_maps: list[LevelLabels], detach: bool = False) -> dict[str, np.ndarray]:
    p = level_gradients(ToyFusion(), ToyLoss(), feats(), [], (8, 8), detach=detach)
    samples = ConflictSamples()
    conflict_at_positives(p, label_maps, samples)
    return samples.arrays()


def closed_form_grads(detach: bool) -> list[list[Tensor]]:
    """grads[k][n] = dL^k/dx^n (C, H_n, W_n) without autograd."""
    x = [f[0] for f in feats()]
    out = []
    for k in range(2):
        r = [bring(n, k, f[None])[0] for n, f in enumerate(x)]
        logits = torch.stack([(A[k, n][:, None, None] * r[n]).sum(0) for n in (0, 1)])
        w = logits.softmax(0)  # (2, H, W)
        g_y = F.conv_transpose2d(T[k][None], K[k], padding=1)[0]  # dL^k/dy_k, (C, H, W)
        dots = torch.stack([(g_y * r[n]).sum(0) for n in (0, 1)])  # <dL/dy, r_n> per location
        mean_dot = (w * dots).sum(0)
        row = []
        for n in (0, 1):
            g_r = w[n] * g_y  # through y = sum_n w_n r_n with w constant
            if not detach:  # through w_n = softmax(logits)_n, logits_n = a_n . r_n
                g_r = g_r + (w[n] * (dots[n] - mean_dot))[None] * A[k, n][:, None, None]
            if n == k:
                g_x = g_r
            elif n > k:  # avg_pool2d(x_n, 2): each fine cell gets a quarter of its parent's
                g_x = g_r.repeat_interleave(2, 1).repeat_interleave(2, 2) / 4
            else:  # nearest upsampling: each coarse cell sums its block
                g_x = 4 * F.avg_pool2d(g_r[None], 2)[0]
            row.append(g_x)
        out.append(row)
    return out


def closed_form(detach: bool = False) -> dict[str, np.ndarray]:
    """The measures at level 0's positive (0, 0) and level 1's positive (7, 7)."""
    g = closed_form_grads(detach)
    loss = sum(
        float((F.conv2d(y, K[k], padding=1)[0] * T[k]).sum())
        for k, y in enumerate(ToyFusion().fuse(feats())[0])
    )
    rows = {key: [] for key in ("own_norm", "cross_norm", "share", "cosine")}
    for k, (j, i) in ((0, (0, 0)), (1, (7, 7))):
        own, cross = g[k][k][:, j, i].double(), g[1 - k][k][:, j, i].double()
        rows["own_norm"].append(float(own.norm()) / loss)
        rows["cross_norm"].append(float(cross.norm()) / loss)
        rows["share"].append(float(cross.norm() / (own.norm() + cross.norm())))
        rows["cosine"].append(float(F.cosine_similarity(own, cross, dim=0)))
    return {key: np.array(v) for key, v in rows.items()}


@pytest.mark.parametrize("detach", [False, True])
def test_gradients_match_the_closed_form(detach: bool) -> None:
    p = level_gradients(ToyFusion(), ToyLoss(), feats(), [], (8, 8), detach=detach)
    want = closed_form_grads(detach)
    for k in (0, 1):
        for n in (0, 1):
            torch.testing.assert_close(p.grads[k][n][0], want[k][n], rtol=1e-4, atol=1e-6)


def test_full_and_detached_differ_materially() -> None:
    """The test above has power against weights wrongly treated as constants in the full case:
    the two closed forms differ at the analysed locations by far more than its tolerance."""
    full, detached = closed_form(False), closed_form(True)
    relative = np.abs(full["cross_norm"] - detached["cross_norm"]) / full["cross_norm"]
    assert relative.min() > 0.1
    assert np.abs(full["cosine"] - detached["cosine"]).min() > 1e-2
    with pytest.raises(AssertionError):  # the detached gradient does not pass as the full one
        np.testing.assert_allclose(
            measured(labels(), detach=True)["cross_norm"], full["cross_norm"], rtol=1e-4
        )


@pytest.mark.parametrize("detach", [False, True])
def test_measures_match_the_closed_form(detach: bool) -> None:
    got, want = measured(labels(), detach), closed_form(detach)
    assert got["level"].tolist() == [0.0, 1.0]
    for key in ("own_norm", "cross_norm", "share", "cosine"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, err_msg=key)
    assert got["bucket"].tolist() == [1.0, 1.0]  # a 50 x 50 object is medium
    weights = ToyFusion().fuse(feats())[1]
    assert got["w_own"].tolist() == pytest.approx(
        [float(weights[0][0, 0, 0, 0]), float(weights[1][0, 1, 7, 7])], rel=1e-6
    )
    # the weight level 1's output gives input level 0 over the location's block (mean)
    assert got["w_others"][0] == pytest.approx(float(weights[1][0, 0, :2, :2].mean()), rel=1e-6)
    assert got["w_others"][1] == pytest.approx(float(weights[0][0, 1, 3, 3]), rel=1e-6)


@pytest.mark.parametrize(
    "shuffled",
    [
        labels(pos0=((3, 3),), pos1=((0, 0),)),  # positives moved
        labels(pos0=((1, 2),), pos1=((0, 7),)),
        [  # the two levels' labels exchanged (each seen on the other's grid)
            LevelLabels(
                resample(labels()[1].label.float(), SIZES[0], "max").long(),
                resample(labels()[1].area, SIZES[0], "max"),
            ),
            LevelLabels(
                resample(labels()[0].label.float(), SIZES[1], "max").long(),
                resample(labels()[0].area, SIZES[1], "max"),
            ),
        ],
    ],
)
def test_shuffled_labels_do_not_give_the_closed_form(shuffled: list[LevelLabels]) -> None:
    got, want = measured(shuffled), closed_form()
    for key in ("cross_norm", "share"):
        assert got[key].shape != want[key].shape or not np.allclose(got[key], want[key], rtol=1e-3)


def test_a_location_needs_one_background_cell_around_it_at_the_other_level() -> None:
    """Level 1's object at (2, 2) lies within one level-0 cell of level 0's object at (0, 0):
    neither location is analysed. At (4, 4) it is two level-0 cells away: both are."""
    assert measured(labels(pos1=((2, 2),)))["level"].size == 0
    got = measured(labels(pos1=((4, 4),)))
    assert got["level"].tolist() == [0.0, 1.0]
    assert got["share"][0] == pytest.approx(closed_form()["share"][0], rel=1e-4)


def test_the_location_set_comes_from_the_ground_truth_alone() -> None:
    """Levels by the best predefined anchor (w/h IoU), cells by the centre; the largest object
    wins a shared cell's area; nothing else enters."""
    criterion = YOLOLoss([(4, 4), (10, 10), (30, 30)], ((2,), (1,), (0,)), num_classes=1)
    boxes = torch.tensor(
        [
            [0.0, 0.0, 28.0, 30.0],
            [10.0, 10.0, 20.0, 20.0],
            [11.0, 11.0, 20.0, 19.0],
            [60, 60, 64, 64],
        ]
    )
    assert object_levels(criterion, boxes).tolist() == [0, 1, 1, 2]
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(64, 64))}
    area = torch.tensor([840.0, 100.0, 72.0, 16.0])
    labs = assigned_labels(criterion, [target], area, [(2, 2), (4, 4), (8, 8)], (32, 16, 8))
    assert torch.nonzero(labs[0].label[0]).tolist() == [[0, 0]]
    assert torch.nonzero(labs[1].label[0]).tolist() == [[0, 0]]  # both centres in cell (0, 0)
    assert labs[1].area[0, 0, 0] == 100.0
    assert torch.nonzero(labs[2].label[0]).tolist() == [[7, 7]]


def test_resample_between_grids() -> None:
    x = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    up = resample(x, (4, 4), "max")
    assert up.shape == (1, 4, 4) and up[0, 1, 1] == 0 and up[0, 0, 3] == 1 and up[0, 3, 0] == 2
    assert torch.equal(resample(up, (2, 2), "max"), x)
    assert torch.equal(resample(up, (2, 2), "mean"), x)
    assert torch.equal(resample(x, (2, 2), "max"), x)


def test_summaries_per_level_and_bucket_and_weight_bins_within_a_level() -> None:
    samples = {
        "level": np.array([0.0, 0.0, 0.0, 0.0, 2.0]),
        "bucket": np.array([0.0, 0.0, 2.0, 2.0, 2.0]),
        "own_norm": np.array([1.0, 2.0, 3.0, 4.0, 100.0]),
        "cross_norm": np.array([0.5, 0.5, 1.0, np.nan, 100.0]),
        "share": np.array([0.1, 0.3, 0.8, np.nan, 0.5]),
        "cosine": np.array([-1.0, 1.0, -0.5, np.nan, 0.9]),
        "w_others": np.array([0.05, 0.15, 0.95, 0.5, 0.05]),
        "w_own": np.array([0.9, 0.8, 0.1, 0.5, 0.9]),
    }
    rows = {(r["level"], r["bucket"]): r for r in summarize(samples)}
    assert len(rows) == 12  # 3 levels x (all + 3 sizes), never pooled across levels
    level0 = rows[(0, "all")]
    assert level0["locations"] == 4 and level0["nonfinite"] == 1
    assert level0["share_mean"] == pytest.approx(0.4)
    assert level0["own_norm_mean"] == pytest.approx(2.5)
    assert level0["cross_norm_mean"] == pytest.approx(2.0 / 3)
    assert level0["negative_cosine"] == pytest.approx(2 / 3)  # of the defined cosines
    assert rows[(0, "small")]["share_mean"] == pytest.approx(0.2)
    assert rows[(0, "medium")]["locations"] == 0 and np.isnan(rows[(0, "medium")]["share_mean"])
    assert rows[(0, "large")]["share_median"] == pytest.approx(0.8)
    assert rows[(2, "all")]["cross_norm_mean"] == 100.0 and rows[(1, "all")]["locations"] == 0
    bins = binned_by_weight(samples)
    assert [(b["level"], b["w_low"], b["locations"]) for b in bins] == [
        (0, 0.0, 1),
        (0, pytest.approx(0.1), 1),
        (0, pytest.approx(0.5), 1),
        (0, pytest.approx(0.9), 1),
        (2, 0.0, 1),  # level 2's location is not pooled into level 0's first bin
    ]
    assert bins[0]["share_mean"] == pytest.approx(0.1) and bins[-1]["share_mean"] == 0.5
    no_weights = {**samples, "w_others": np.full(5, np.nan)}
    assert binned_by_weight(no_weights) == []


def test_agreement_reads_the_weights_at_the_assigned_centre() -> None:
    w0 = torch.zeros(1, 2, 2, 2)
    w0[0, 0] = 0.9
    w0[0, 1] = 0.1
    w1 = torch.zeros(1, 2, 4, 4)
    w1[0, 0] = 0.6  # level 1 prefers input level 0: disagreement
    w1[0, 1] = 0.4
    # object 0 at level 0 (stride 2), cell (j=1, i=0); object 1 at level 1 (stride 1), (0, 3)
    targets = [{"boxes": torch.tensor([[0.0, 2.0, 2.0, 4.0], [3.0, 0.0, 4.0, 1.0]])}]
    levels = torch.tensor([0, 1])
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
