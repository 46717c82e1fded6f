"""CocoDetection on the real COCO 2017 subset and on tiny hand-made datasets."""

from __future__ import annotations

import json

import numpy as np
import torch
from data_helpers import rgb
from torchvision import tv_tensors

from study.data import CocoDetection, coco_api


def test_val_split_size_and_category_mapping(coco_subset):
    ds = CocoDetection(coco_subset, "val2017")
    assert len(ds) == 158
    assert ds.num_classes == 80
    assert len(ds.label_to_cat_id) == 80 and len(ds.class_names) == 80
    for label in range(80):
        assert ds.cat_id_to_label[ds.label_to_cat_id[label]] == label
    assert ds.label_to_cat_id[0] == 1 and ds.class_names[0] == "person"
    assert ds.label_to_cat_id[79] == 90 and ds.cat_id_to_label[90] == 79
    assert ds.label_to_cat_id == sorted(ds.label_to_cat_id)
    assert ds.ids == sorted(ds.ids)
    assert ds.ann_file.name == "instances_val2017.json"


def test_crowd_boxes_left_out_of_targets(coco_subset):
    ds = CocoDetection(coco_subset, "val2017")
    assert ds.box_stats["total"] == 1424
    assert ds.box_stats["crowd"] == 16
    assert ds.box_stats["kept"] == 1424 - 16
    raw = json.loads(ds.ann_file.read_text())
    crowd_images = sorted({a["image_id"] for a in raw["annotations"] if a["iscrowd"]})
    assert crowd_images
    for img_id in crowd_images[:3]:
        idx = ds.ids.index(img_id)
        _, target = ds[idx]
        non_crowd = [a for a in raw["annotations"] if a["image_id"] == img_id and not a["iscrowd"]]
        assert len(target["boxes"]) == len(non_crowd)
        expected = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in non_crowd)],
            dtype=torch.float32,
        )
        assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), expected)
    # The evaluator's COCO object keeps every annotation, crowd included.
    api = coco_api(coco_subset, "val2017")
    assert len(api.getAnnIds()) == 1424
    assert len(api.getAnnIds(iscrowd=True)) == 16


def test_sample_format(coco_subset):
    ds = CocoDetection(coco_subset, "val2017", max_images=2)
    assert len(ds) == 2
    image, target = ds[0]
    info = ds.coco.imgs[ds.ids[0]]
    assert isinstance(image, tv_tensors.Image)
    assert image.dtype == torch.uint8 and image.shape == (3, info["height"], info["width"])
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(boxes.canvas_size) == (info["height"], info["width"])
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert target["labels"].dtype == torch.int64 and len(target["labels"]) == len(boxes)
    assert target["image_id"] == ds.ids[0] == 139
    assert target["orig_size"] == (info["height"], info["width"])
    anns = [a for a in ds.coco.imgToAnns[139] if not a["iscrowd"]]
    assert [ds.label_to_cat_id[int(lb)] for lb in target["labels"]] == [
        a["category_id"] for a in anns
    ]


def test_max_images_keeps_first_sorted_ids(coco_subset):
    full = CocoDetection(coco_subset, "train2017")
    assert len(full) == 288
    part = CocoDetection(coco_subset, "train2017", max_images=10)
    assert part.ids == sorted(full.coco.imgs)[:10]


def test_image_without_boxes_is_kept(make_coco):
    root = make_coco(
        {"a.png": rgb(20, 30), "b.png": rgb(16, 16)},
        anns=[{"image_id": 1, "bbox": [2, 3, 10, 5], "category_id": 5}],
    )
    ds = CocoDetection(root, "val2017")
    assert len(ds) == 2
    _, t_empty = ds[1]
    assert t_empty["boxes"].shape == (0, 4) and t_empty["labels"].shape == (0,)
    assert t_empty["image_id"] == 2
    _, t = ds[0]
    assert t["boxes"].tolist() == [[2.0, 3.0, 12.0, 8.0]]
    assert t["labels"].tolist() == [2]  # category ids 1, 2, 5 -> labels 0, 1, 2
    assert ds.label_to_cat_id == [1, 2, 5]
    assert np.array_equal(ds[0][0].permute(1, 2, 0).numpy(), rgb(20, 30))


def test_cached_images_equal_decoded_ones_and_are_not_shared(synthetic_root):
    root, _ = synthetic_root
    plain = CocoDetection(root, "val2017", max_images=4)
    cached = CocoDetection(root, "val2017", max_images=4, cache_images=True)
    assert len(cached._images) == 4
    for i in range(4):
        (a, ta), (b, tb) = plain[i], cached[i]
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    image, _ = cached[0]
    image.zero_()  # a transform writing into its input must not change the cache
    again, _ = cached[0]
    assert torch.equal(again, plain[0][0])


def test_cache_too_large_is_refused_before_loading(make_coco, monkeypatch):
    import pytest

    from study.data import coco as coco_module
    from study.errors import DataError

    root = make_coco({"a.png": rgb(8, 8)}, sizes={"a.png": (4000, 4000)})
    monkeypatch.setattr(coco_module, "CACHE_LIMIT_BYTES", 1000)
    with pytest.raises(DataError, match="caching 1 decoded images .*data.cache_images: false"):
        CocoDetection(root, "val2017", cache_images=True)
