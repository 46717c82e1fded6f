"""The synthetic benchmark: COCO layout, determinism, size mix, nesting, COCOeval."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from study.data import CocoDetection, coco_api, size_bucket
from study.data.synthetic import CLASS_NAMES, generate

COCO_MIX = {"small": 0.41, "medium": 0.34, "large": 0.25}


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "stats.json"
    }


def test_layout_and_determinism(tmp_path):
    a = generate(tmp_path / "a", num_train=4, num_val=3, img_size=160, seed=3)
    generate(tmp_path / "b", num_train=4, num_val=3, img_size=160, seed=3)
    generate(tmp_path / "c", num_train=4, num_val=3, img_size=160, seed=4)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert sorted(fa) == [
        "annotations/instances_train2017.json",
        "annotations/instances_val2017.json",
        *[f"train2017/{i:012d}.png" for i in (1, 2, 3, 4)],
        *[f"val2017/{i:012d}.png" for i in (1_000_001, 1_000_002, 1_000_003)],
    ]
    assert fa == fb  # byte-identical JSON and images
    assert sorted(fc) == sorted(fa)
    differing = [k for k in fa if fa[k] != fc[k]]
    assert len(differing) == len(fa)  # another seed changes every file
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["images"] == {"train2017": 4, "val2017": 3} == a["images"]
    assert stats["images_per_s"] > 0 and stats["params"]["seed"] == 3


def test_val_images_do_not_depend_on_num_train(tmp_path):
    generate(tmp_path / "a", num_train=1, num_val=2, img_size=160, seed=0)
    generate(tmp_path / "b", num_train=3, num_val=2, img_size=160, seed=0)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    for key in ("annotations/instances_val2017.json", "val2017/000001000002.png"):
        assert fa[key] == fb[key]


def test_regenerating_smaller_removes_stale_images(tmp_path):
    generate(tmp_path, num_train=3, num_val=1, img_size=160)
    generate(tmp_path, num_train=1, num_val=1, img_size=160)
    assert sorted(p.name for p in (tmp_path / "train2017").iterdir()) == ["000000000001.png"]


def test_too_small_image_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="img_size must be >= 160"):
        generate(tmp_path, 1, 1, img_size=128)


def _load(root, split):
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _all_annotations(root):
    return [a for s in ("train2017", "val2017") for a in _load(root, s)["annotations"]]


def test_size_mix_near_coco(synthetic_root):
    root, stats = synthetic_root
    anns = _all_annotations(root)
    assert len(anns) > 900  # ~6 boxes per image on 200 images
    counts = defaultdict(int)
    for a in anns:
        counts[size_bucket(a["area"])] += 1
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3], abs=0.02)
    for bucket, target in COCO_MIX.items():
        frac = counts[bucket] / len(anns)
        assert abs(frac - target) <= 0.05, (bucket, frac)
        assert stats["size_mix"][bucket] == pytest.approx(frac, abs=1e-4)


def test_every_image_has_all_sizes_and_nesting(synthetic_root):
    root, _ = synthetic_root
    for split in ("train2017", "val2017"):
        d = _load(root, split)
        by_image = defaultdict(list)
        for a in d["annotations"]:
            by_image[a["image_id"]].append(a)
        assert len(by_image) == len(d["images"])
        for img in d["images"]:
            anns = by_image[img["id"]]
            assert {size_bucket(a["area"]) for a in anns} == {"small", "medium", "large"}
            for a in anns:  # every box lies inside the image
                x, y, w, h = a["bbox"]
                assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            large = [a["bbox"] for a in anns if size_bucket(a["area"]) == "large"]
            small = [a["bbox"] for a in anns if size_bucket(a["area"]) == "small"]
            nested = [
                s
                for s in small
                for g in large
                if s[0] >= g[0]
                and s[1] >= g[1]
                and s[0] + s[2] <= g[0] + g[2]
                and s[1] + s[3] <= g[1] + g[3]
            ]
            assert nested, f"image {img['id']}: no small box inside a large box"


def test_classes_differ_by_shape_and_all_occur(synthetic_root):
    root, stats = synthetic_root
    d = _load(root, "train2017")
    assert len(d["categories"]) == len(CLASS_NAMES) >= 8
    assert [c["id"] for c in d["categories"]] == list(range(1, len(CLASS_NAMES) + 1))
    used = {a["category_id"] for a in d["annotations"]}
    assert used == set(range(1, len(CLASS_NAMES) + 1))
    assert min(stats["per_class"].values()) >= 50


def test_colours_independent_of_class(synthetic_root):
    """The centre pixel of solid-filled boxes of one class spans many colours."""
    root, _ = synthetic_root
    ds = CocoDetection(root, "val2017", max_images=20)
    colours = defaultdict(list)
    for i in range(len(ds)):
        image, target = ds[i]
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            colours[label].append(image[:, cy, cx].float().numpy())
    spreads = [np.std(np.stack(c), axis=0).mean() for c in colours.values() if len(c) >= 5]
    assert len(spreads) >= 5
    assert min(spreads) > 30  # uniform random colours have a std of ~74 per channel


def test_loads_in_dataset_and_cocoeval_perfect_detections(synthetic_root):
    root, _ = synthetic_root
    ds = CocoDetection(root, "val2017")
    assert len(ds) == 40 and ds.num_classes == len(CLASS_NAMES)
    assert ds.box_stats["clipped"] == 0 and ds.box_stats["dropped_degenerate"] == 0
    image, _ = ds[0]
    assert image.shape == (3, 256, 256)
    gt = coco_api(root, "val2017")
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        res = gt.loadRes(dets)
        ev = COCOeval(gt, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50, ap75, ap_s, ap_m, ap_l = ev.stats[:6]
    assert ap == pytest.approx(1.0) and ap50 == pytest.approx(1.0)
    assert ap_s == pytest.approx(1.0) and ap_m == pytest.approx(1.0)
    assert ap_l == pytest.approx(1.0) and ap75 == pytest.approx(1.0)
    # and a detector that finds nothing of class 1 loses AP
    partial = [d for d in dets if d["category_id"] != 1]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(partial), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(0.9, abs=1e-6)
