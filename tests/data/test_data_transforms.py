"""Train / eval transforms and collate: shapes, normalisation, box geometry, each switch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from study.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CocoDetection,
    boxes_to_original,
    build_eval_transforms,
    build_train_transforms,
    collate,
)
from study.errors import ConfigError

OFF = {
    "photometric": False,
    "expand": False,
    "crop": False,
    "flip": False,
    "affine": False,
    "min_box_side": 0,
}


def sample(h=100, w=200, boxes=((20, 10, 60, 50),), colour=(255, 0, 128), image_id=7, seed=None):
    if seed is None:
        img = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()
    else:
        g = torch.Generator().manual_seed(seed)
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).view(-1, 4), format="XYXY", canvas_size=(h, w)
        ),
        "labels": torch.arange(len(boxes), dtype=torch.int64),
        "image_id": image_id,
        "orig_size": (h, w),
    }
    return tv_tensors.Image(img), target


def test_square_eval_resize_scales_boxes_and_maps_back():
    image, target = build_eval_transforms(64, "square")(*sample())
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert type(target["boxes"]) is torch.Tensor
    assert target["boxes"].flatten().tolist() == pytest.approx([6.4, 6.4, 19.2, 32.0])
    info = target["info"]
    assert info["scale"] == pytest.approx((0.32, 0.64)) and info["pad"] == (0.0, 0.0)
    assert info["image_id"] == 7 and info["orig_size"] == (100, 200)
    assert target["weights"].tolist() == [1.0]
    back = boxes_to_original(target["boxes"], info)
    assert back.flatten().tolist() == pytest.approx([20.0, 10.0, 60.0, 50.0], abs=1e-4)


def test_letterbox_keeps_aspect_pads_with_mean_and_maps_back():
    image, target = build_eval_transforms(64, "letterbox")(*sample())
    assert image.shape == (3, 64, 64)
    info = target["info"]
    assert info["scale"] == pytest.approx((0.32, 0.32)) and info["pad"] == (0.0, 16.0)
    assert target["boxes"].flatten().tolist() == pytest.approx([6.4, 19.2, 19.2, 32.0])
    back = boxes_to_original(target["boxes"], info)
    assert back.flatten().tolist() == pytest.approx([20.0, 10.0, 60.0, 50.0], abs=1e-4)
    # padding rows (0..15, 48..63) hold the mean colour: ~0 after normalisation
    assert image[:, :16].abs().max() < 0.02 and image[:, 48:].abs().max() < 0.02
    assert image[0, 16:48].mean() == pytest.approx((1 - 0.485) / 0.229, abs=1e-3)


def test_letterbox_tall_image_pads_columns():
    _, target = build_eval_transforms(50, "letterbox")(
        *sample(h=200, w=100, boxes=((0, 0, 100, 200),))
    )
    assert target["info"]["pad"] == (12.0, 0.0)
    assert target["boxes"].flatten().tolist() == pytest.approx([12.0, 0.0, 37.0, 50.0])


def test_normalisation_values():
    image, _ = build_eval_transforms(32)(*sample(colour=(255, 0, 128)))
    expected = [
        (v - m) / s
        for v, m, s in zip((1.0, 0.0, 128 / 255), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert expected[0] == pytest.approx(2.2489, abs=1e-4)
    assert image[:, 5, 5].tolist() == pytest.approx(expected, abs=1e-5)
    assert image.std(dim=(1, 2)).max() < 1e-5


def test_bad_protocol_and_augment_keys():
    with pytest.raises(ConfigError, match="letterbox"):
        build_eval_transforms(64, "pad")
    with pytest.raises(ConfigError, match="unknown key"):
        build_train_transforms({"mosaic": True}, 64)


def test_train_without_augmentation_is_a_square_resize():
    image, target = build_train_transforms(OFF, 64)(*sample())
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert target["boxes"].flatten().tolist() == pytest.approx([6.4, 6.4, 19.2, 32.0])
    assert target["labels"].tolist() == [0] and target["weights"].tolist() == [1.0]
    assert target["info"]["scale"] == pytest.approx((0.32, 0.64))
    assert set(target) == {"boxes", "labels", "weights", "info"}


def test_min_box_side_drops_thin_boxes():
    boxes = ((10, 10, 14, 40), (50, 50, 90, 90))  # 4 px wide, 40 px
    _, t = build_train_transforms({**OFF, "min_box_side": 6}, 100)(*sample(100, 100, boxes))
    assert t["boxes"].tolist() == [[50.0, 50.0, 90.0, 90.0]] and t["labels"].tolist() == [1]
    assert len(t["weights"]) == 1
    _, t = build_train_transforms({**OFF, "min_box_side": 3}, 100)(*sample(100, 100, boxes))
    assert len(t["boxes"]) == 2
    # measured at the training size: at 200 px the thin box is 8 px wide and stays
    _, t = build_train_transforms({**OFF, "min_box_side": 6}, 200)(*sample(100, 100, boxes))
    assert len(t["boxes"]) == 2


def test_all_boxes_lost_falls_back_to_plain_resize():
    # official behaviour: if filtering removes every box, the unaugmented image is used
    _, t = build_train_transforms({**OFF, "min_box_side": 50}, 100)(
        *sample(100, 100, ((10, 10, 40, 40),))
    )
    assert t["boxes"].tolist() == [[10.0, 10.0, 40.0, 40.0]]


def _run(cfg, n=24, size=100, seed=0, **kw):
    torch.manual_seed(seed)
    tf = build_train_transforms({**OFF, **cfg}, size)
    return [tf(*sample(**kw)) for _ in range(n)]


def test_flip_mirrors_boxes_in_some_samples():
    outs = _run({"flip": True}, h=100, w=100, boxes=((10, 20, 30, 60),))
    mirrored = sum(t["boxes"].tolist() == [[70.0, 20.0, 90.0, 60.0]] for _, t in outs)
    plain = sum(t["boxes"].tolist() == [[10.0, 20.0, 30.0, 60.0]] for _, t in outs)
    assert mirrored + plain == len(outs) and mirrored >= 5 and plain >= 5


def test_photometric_changes_pixels_not_boxes():
    base_img, base_t = build_train_transforms(OFF, 64)(*sample(seed=1))
    outs = _run({"photometric": True}, n=6, size=64, seed=1)
    assert all(t["boxes"].tolist() == base_t["boxes"].tolist() for _, t in outs)
    assert sum(not torch.allclose(img, base_img, atol=1e-3) for img, _ in outs) >= 5


def test_expand_shrinks_boxes_in_some_samples():
    outs = _run({"expand": True}, h=100, w=100, boxes=((20, 20, 80, 80),))
    areas = [float((t["boxes"][0, 2:] - t["boxes"][0, :2]).prod()) for _, t in outs]
    assert sum(a < 3600 * 0.9 for a in areas) >= 4  # zoomed out
    assert sum(a == pytest.approx(3600) for a in areas) >= 4  # p = 0.5: sometimes untouched


def test_crop_enlarges_boxes_in_some_samples_and_keeps_weights_aligned():
    boxes = ((10, 10, 40, 40), (50, 55, 70, 80), (60, 5, 90, 30))
    outs = _run({"crop": True}, n=30, h=100, w=100, boxes=boxes)
    grew = 0
    for _, t in outs:
        n = len(t["boxes"])
        assert 1 <= n <= 3 and len(t["labels"]) == n and len(t["weights"]) == n
        for box, label in zip(t["boxes"], t["labels"], strict=True):
            orig = torch.tensor(boxes[int(label)], dtype=torch.float32)
            grew += (box[2:] - box[:2]).prod() > (orig[2:] - orig[:2]).prod() * 1.2
    assert grew >= 5


def test_affine_moves_boxes_in_some_samples():
    outs = _run({"affine": True}, h=100, w=100, boxes=((30, 30, 60, 70),))
    same = sum(t["boxes"].tolist() == [[30.0, 30.0, 60.0, 70.0]] for _, t in outs)
    assert 4 <= same <= len(outs) - 4


def test_all_augmentations_together_on_real_images(coco_subset):
    cfg = {
        "photometric": True,
        "expand": True,
        "crop": True,
        "flip": True,
        "affine": True,
        "min_box_side": 6,
    }
    ds = CocoDetection(
        coco_subset, "val2017", max_images=4, transforms=build_train_transforms(cfg, 96)
    )
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=4, collate_fn=collate)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 96, 96) and images.dtype == torch.float32
    assert [t["info"]["image_id"] for t in targets] == ds.ids
    for t in targets:
        b = t["boxes"]
        assert len(b) >= 1 and b.dtype == torch.float32 and t["labels"].dtype == torch.int64
        assert (b[:, 2:] - b[:, :2]).min() > 6 and b.min() >= 0 and b.max() <= 96 + 1e-3
        assert t["weights"].tolist() == [1.0] * len(b)


def test_collate_stacks_and_rejects_mixed_sizes():
    tf = build_eval_transforms(32)
    images, targets = collate([tf(*sample()), tf(*sample(boxes=((0, 0, 5, 5), (1, 1, 9, 9))))])
    assert images.shape == (2, 3, 32, 32)
    assert [len(t["boxes"]) for t in targets] == [1, 2]
    assert all(type(t["boxes"]) is torch.Tensor and t["boxes"].shape[1] == 4 for t in targets)
    assert targets[1]["weights"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="different shapes"):
        collate([tf(*sample()), build_eval_transforms(16)(*sample())])
