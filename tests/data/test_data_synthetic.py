"""The synthetic benchmark: COCO layout, determinism, size mix, nesting, COCOeval."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from study.data import CocoDetection, coco_api
from study.data.synthetic import VERSIONS, class_names, generate, size_bucket
from study.data.synthetic.common import coverage
from study.data.synthetic.v2 import MAX_COVER, MAX_TOTAL_COVER

# Size mix per version: v1 follows COCO's 41/34/25 %; v2 has one large object per image and
# more small and medium ones (study/data/synthetic/v2.py).
SIZE_MIX = {
    1: {"small": 0.41, "medium": 0.34, "large": 0.25},
    2: {"small": 0.45, "medium": 0.36, "large": 0.19},
}


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
    assert a["images_per_s"] > 0 and stats["params"]["seed"] == 3  # returned, never written
    assert "seconds" not in stats and "images_per_s" not in stats
    # the same params write the same stats.json: a regenerated dataset hashes the same for DVC
    assert (tmp_path / "a" / "stats.json").read_bytes() == (
        tmp_path / "b" / "stats.json"
    ).read_bytes()


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


def test_size_mix_of_each_version(synthetic_root):
    root, stats = synthetic_root
    anns = _all_annotations(root)
    assert len(anns) > 750  # 4-5 boxes per image on 200 images
    counts = defaultdict(int)
    for a in anns:
        counts[size_bucket(a["area"])] += 1
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3], abs=0.02)
    for bucket, target in SIZE_MIX[stats["params"]["version"]].items():
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
    names = class_names(stats["params"]["version"])
    d = _load(root, "train2017")
    assert len(d["categories"]) == len(names) == {1: 10, 2: 5}[stats["params"]["version"]]
    assert [c["name"] for c in d["categories"]] == list(names)
    assert [c["id"] for c in d["categories"]] == list(range(1, len(names) + 1))
    used = {a["category_id"] for a in d["annotations"]}
    assert used == set(range(1, len(names) + 1))
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
    root, stats = synthetic_root
    n_classes = len(class_names(stats["params"]["version"]))
    ds = CocoDetection(root, "val2017")
    assert len(ds) == 40 and ds.num_classes == n_classes
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
    assert ev.stats[0] == pytest.approx(1 - 1 / n_classes, abs=1e-6)


# Version 1's output for (6 train, 4 val, 160 px, seed 0), stats.json excluded: sha256 over the
# sorted per-file sha256 lines, as `find . -type f | sort | xargs sha256sum | sha256sum` prints.
V1_REFERENCE = "f22558e2b17cc8562faaa18e8d952486f95ab2e70919690f2fcb0dc445f5529d"


def test_version_1_is_byte_identical_to_the_original_generator(tmp_path):
    import hashlib

    generate(tmp_path, num_train=6, num_val=4, img_size=160, seed=0, version=1)
    lines = "".join(
        f"{hashlib.sha256(data).hexdigest()}  ./{name}\n" for name, data in _files(tmp_path).items()
    )
    assert hashlib.sha256(lines.encode()).hexdigest() == V1_REFERENCE


def test_unknown_version_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic benchmark version 3; known: 1, 2"):
        generate(tmp_path, 1, 1, version=3)
    assert set(VERSIONS) == {1, 2}


def test_version_2_bounds_occlusion_and_nests_on_the_large_object(tmp_path):
    generate(tmp_path, num_train=150, num_val=0, img_size=160, seed=5, version=2)
    d = _load(tmp_path, "train2017")
    by_image = defaultdict(list)
    for a in d["annotations"]:  # in drawing order: later boxes are drawn over earlier ones
        by_image[a["image_id"]].append(a)
    tol = 0.005  # boxes are rounded to 0.01 px after placement
    for anns in by_image.values():
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        large = [i for i, a in enumerate(anns) if size_bucket(a["area"]) == "large"]
        assert len(large) == 1
        for i in range(len(boxes)):
            hidden = [coverage(later, boxes[i : i + 1])[0] for later in boxes[i + 1 :]]
            assert max(hidden, default=0) <= MAX_COVER + tol
            assert sum(hidden) <= MAX_TOTAL_COVER + tol
        lb = boxes[large[0]]
        first_small = next(
            b for b, a in zip(boxes, anns, strict=True) if size_bucket(a["area"]) == "small"
        )
        assert (first_small[:2] >= lb[:2]).all() and (first_small[2:] <= lb[2:]).all()
