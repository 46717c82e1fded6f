"""MixupDataset: the official pixel blend, box weights, the off switch, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from study.data import MixupDataset, build_train_transforms, collate


class Constant(Dataset):
    """Image i is filled with VALUES[i]; its boxes are BOXES[i]."""

    VALUES = (200, 100, 50, 10)
    SHAPES = ((20, 30), (40, 10), (20, 30), (30, 30))
    BOXES = (((1, 1, 10, 10), (2, 2, 20, 15)), ((0, 0, 5, 30),), ((3, 3, 9, 9),), ())
    num_classes = 4

    def __len__(self):
        return len(self.VALUES)

    def __getitem__(self, i):
        h, w = self.SHAPES[i]
        img = tv_tensors.Image(torch.full((3, h, w), self.VALUES[i], dtype=torch.uint8))
        boxes = torch.tensor(self.BOXES[i], dtype=torch.float32).view(-1, 4)
        return img, {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.full((len(boxes),), i, dtype=torch.int64),
            "image_id": 100 + i,
            "orig_size": (h, w),
        }


def _mixed(seed=0, index=0, alpha=1.5):
    gen = torch.Generator().manual_seed(seed)
    return MixupDataset(Constant(), alpha=alpha, generator=gen).mix(index)


def test_pixels_are_the_official_blend():
    for seed in range(6):
        image, target = _mixed(seed)
        lam = target["mixup"]["lam"]
        j = target["mixup"]["image_id2"] - 100
        assert 0 < lam < 1 and j in (1, 2, 3)
        h2, w2 = Constant.SHAPES[j]
        h, w = max(20, h2), max(30, w2)
        assert image.shape == (3, h, w) and image.dtype == torch.uint8
        a, b = Constant.VALUES[0], Constant.VALUES[j]
        both = math.floor(np.float32(a) * np.float32(lam) + np.float32(b) * np.float32(1 - lam))
        assert abs(int(image[0, 0, 0]) - both) <= 1
        assert int(image[0, 0, 0]) == pytest.approx(lam * a + (1 - lam) * b, abs=1.0)
        if h2 > 20:  # rows only the second image covers: (1 - lam) * b
            assert abs(int(image[1, h - 1, 0]) - (1 - lam) * b) < 1
        if h2 > 20 and w2 < 30:  # covered by neither image: zero, as in the official code
            assert int(image[2, h - 1, w - 1]) == 0


def test_boxes_are_concatenated_with_ratio_weights():
    image, target = _mixed(seed=3)
    lam = target["mixup"]["lam"]
    j = target["mixup"]["image_id2"] - 100
    expected = [list(map(float, b)) for b in Constant.BOXES[0] + Constant.BOXES[j]]
    assert target["boxes"].tolist() == expected
    assert tuple(target["boxes"].canvas_size) == tuple(image.shape[-2:])
    assert target["labels"].tolist() == [0, 0] + [j] * len(Constant.BOXES[j])
    w = target["weights"]
    assert w[:2].tolist() == pytest.approx([lam, lam])
    assert w[2:].tolist() == pytest.approx([1 - lam] * len(Constant.BOXES[j]))
    assert float(w.sum()) == pytest.approx(2 * lam + (1 - lam) * len(Constant.BOXES[j]))
    assert target["image_id"] == 100


def test_switched_off_is_the_plain_sample():
    ds = MixupDataset(Constant(), generator=torch.Generator().manual_seed(0))
    ds.set_enabled(False)
    for i in range(len(ds)):
        image, target = ds[i]
        ref_image, ref_target = Constant()[i]
        assert torch.equal(image, ref_image)
        assert torch.equal(target["boxes"], ref_target["boxes"])
        assert target["weights"].tolist() == [1.0] * len(ref_target["labels"])
        assert "mixup" not in target
    ds.set_enabled(True)
    assert "mixup" in ds[0][1]
    assert ds.num_classes == 4  # attributes of the wrapped dataset pass through


def test_seeded_runs_repeat_and_seeds_differ():
    a, b, c = _mixed(seed=11), _mixed(seed=11), _mixed(seed=12)
    assert torch.equal(a[0], b[0]) and a[1]["mixup"] == b[1]["mixup"]
    assert a[1]["mixup"]["lam"] != c[1]["mixup"]["lam"]
    ds = MixupDataset(Constant())  # no generator: torch's global RNG
    torch.manual_seed(5)
    first = ds.mix(1)[1]["mixup"]
    torch.manual_seed(5)
    assert ds.mix(1)[1]["mixup"] == first
    assert first["image_id2"] != 101  # never mixed with itself


def test_ratio_follows_beta_alpha():
    ds = MixupDataset(Constant(), alpha=1.5, generator=torch.Generator().manual_seed(0))
    lams = np.array([ds.mix(0)[1]["mixup"]["lam"] for _ in range(400)])
    # Beta(1.5, 1.5): mean 0.5, variance 1 / (4 * (2 * 1.5 + 1)) = 0.0625
    assert abs(lams.mean() - 0.5) < 0.04
    assert abs(lams.var() - 0.0625) < 0.015


# train.augment with every transform off but the flip
FLIP_ONLY = {
    "photometric": False,
    "expand": False,
    "crop": False,
    "flip": True,
    "affine": False,
    "min_box_side": 0,
}


def test_mixup_then_train_transforms_carry_weights():
    off = FLIP_ONLY
    ds = MixupDataset(
        Constant(),
        transforms=build_train_transforms(off, 32),
        generator=torch.Generator().manual_seed(2),
    )
    image, target = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    lam = target["info"]["mixup"]["lam"]
    w = target["weights"]
    assert len(w) == len(target["boxes"]) == len(target["labels"]) >= 2
    assert w[:2].tolist() == pytest.approx([lam, lam])
    assert all(v == pytest.approx(1 - lam) for v in w[2:].tolist())


def test_dataloader_workers_reproducible():
    off = FLIP_ONLY
    ds = MixupDataset(Constant(), transforms=build_train_transforms(off, 32))

    def run():
        loader = DataLoader(
            ds,
            batch_size=2,
            num_workers=2,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(123),
        )
        return [(t["info"]["mixup"]["lam"], t["boxes"].tolist()) for _, ts in loader for t in ts]

    first, second = run(), run()
    assert first == second
    assert len({lam for lam, _ in first}) == len(first)  # each sample draws its own ratio
