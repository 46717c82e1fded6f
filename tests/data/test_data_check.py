"""The dataset checker: every problem found at once, raised by load_coco, printed by the report."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import coco_dict, rgb, write_image
from PIL import Image
from torch.utils.data import DataLoader

from study.data import CocoDetection, check_annotations, check_dataset, run_data_check
from study.data.check import Problem, check_images, error_message
from study.data.coco import load_rgb
from study.errors import DataError, user_message

ANN = "instances_val2017.json"


def _ann_path(root: Path, split: str = "val2017") -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _edit(root: Path, change: Any) -> None:
    """Rewrite the val2017 annotation file through ``change(d)``."""
    d = json.loads(_ann_path(root).read_text())
    change(d)
    _ann_path(root).write_text(json.dumps(d))


def _by_kind(problems: list[Problem]) -> dict[str, Problem]:
    return {p.kind: p for p in problems}


def _load_error(root: Path) -> str:
    with pytest.raises(DataError) as exc:
        CocoDetection(root, "val2017")
    msg = str(exc.value)
    assert msg.startswith(str(_ann_path(root)) + ": ") and "\n" not in msg
    assert msg.endswith(f"Run `study data check {root}` for the full list.")
    return msg


def test_duplicate_image_ids_from_two_merged_files(make_coco):
    # Two files merged by concatenating their lists: both number their images and boxes from 1.
    root = make_coco({"a.png": rgb(20, 20), "b.png": rgb(20, 20)})
    first = coco_dict(
        [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
        [{"image_id": 1, "bbox": [1, 1, 5, 5]}],
    )
    second = coco_dict(
        [{"id": 1, "file_name": "b.png", "width": 20, "height": 20}],
        [{"image_id": 1, "bbox": [2, 2, 5, 5]}, {"image_id": 1, "bbox": [3, 3, 5, 5]}],
    )
    merged = {k: first[k] + second[k] for k in ("images", "annotations")}
    merged["categories"] = first["categories"]
    _ann_path(root).write_text(json.dumps(merged))
    msg = _load_error(root)
    assert "2 problems: 1 duplicate image id (e.g. id 1 ('a.png', 'b.png'))" in msg
    assert "; 1 duplicate annotation id (e.g. id 1)." in msg
    found = _by_kind(check_annotations(merged))
    assert found["image_duplicate_id"].count == 1 and found["ann_duplicate_id"].count == 1


@pytest.mark.parametrize("outside", ["absolute", "../up.png", "sub/../../up.png"])
def test_file_name_outside_the_image_folder(make_coco, tmp_path, outside):
    write_image(tmp_path / "up.png", rgb(10, 10))  # the file exists: only the name is wrong
    name = str(tmp_path / "up.png") if outside == "absolute" else outside
    root = make_coco({"a.png": rgb(10, 10), "b.png": rgb(10, 10)})
    _edit(root, lambda d: d["images"][1].update(file_name=name))
    msg = _load_error(root)
    expect = (
        "1 image whose 'file_name' is absolute or leaves the image folder "
        f"(e.g. id 2 (file_name {name!r}))"
    )
    assert f"{ANN}: {expect}" in msg


def test_file_name_inside_with_dots_is_fine(make_coco):
    root = make_coco({"a.png": rgb(10, 10)})
    (root / "val2017" / "sub").mkdir()
    _edit(root, lambda d: d["images"][0].update(file_name="sub/../a.png"))
    assert CocoDetection(root, "val2017")[0][0].shape == (3, 10, 10)


def test_size_disagreeing_with_file_is_reported_by_the_check(make_coco):
    root = make_coco(
        {"a.png": rgb(40, 50), "b.png": rgb(8, 8)},
        anns=[{"image_id": 2, "bbox": [1, 1, 4, 4]}],
        sizes={"a.png": (100, 100)},
    )
    text, ok = run_data_check(root)
    assert not ok
    assert "1 image whose file size differs from the JSON's width/height" in text
    assert "(e.g. a.png (JSON 100x100, file 50x40))" in text
    assert run_data_check(root, images=False)[1]  # the JSON alone is consistent


@pytest.mark.parametrize(
    "key, expect",
    [
        ("area", "1 annotation without a finite number 'area' (e.g. id 2 (area missing))"),
        ("iscrowd", "1 annotation whose 'iscrowd' is not 0 or 1 (e.g. id 2 (iscrowd missing))"),
        ("id", "1 annotation without an integer 'id' (e.g. annotations[1] (id missing))"),
    ],
)
def test_annotation_without_a_key_cocoeval_needs(make_coco, key, expect):
    anns = [{"image_id": 1, "bbox": [1, 1, 4, 4]}, {"image_id": 1, "bbox": [2, 2, 4, 4]}]
    root = make_coco({"a.png": rgb(10, 10)}, anns=anns)
    _edit(root, lambda d: d["annotations"][1].pop(key))
    assert f"{ANN}: {expect}." in _load_error(root)


@pytest.mark.parametrize(
    "change, expect",
    [
        (
            {"bbox": [1, float("nan"), 4, 4]},
            "'bbox' of 4 finite numbers (e.g. id 1 (bbox [1, nan, 4, 4]))",
        ),
        ({"area": "16"}, "without a finite number 'area' (e.g. id 1 (area '16'))"),
        ({"iscrowd": True}, "'iscrowd' is not 0 or 1 (e.g. id 1 (iscrowd True))"),
        ({"category_id": "1"}, "not in 'categories' (e.g. id 1 (category_id '1'))"),
    ],
)
def test_bad_annotation_value(make_coco, change, expect):
    root = make_coco({"a.png": rgb(10, 10)}, anns=[{"image_id": 1, "bbox": [1, 1, 4, 4]}])
    _edit(root, lambda d: d["annotations"][0].update(change))
    assert f"{ANN}: 1 annotation" in _load_error(root) and expect in _load_error(root)


@pytest.mark.parametrize(
    "change, expect",
    [
        (
            {"width": "abc"},
            "1 image without a positive integer 'width'/'height' "
            "(e.g. id 1 (width 'abc', height 10))",
        ),
        ({"height": 0}, "(e.g. id 1 (width 10, height 0))"),
        ({"file_name": 12}, "1 image without a string 'file_name' (e.g. id 1 (file_name 12))"),
        ({"file_name": ""}, "1 image without a string 'file_name' (e.g. id 1 (file_name ''))"),
        ({"id": True}, "1 image without an integer 'id' (e.g. images[0] (id True))"),
    ],
)
def test_bad_image_entry(make_coco, change, expect):
    root = make_coco({"a.png": rgb(10, 10)})
    _edit(root, lambda d: d["images"][0].update(change))
    assert expect in _load_error(root)


@pytest.mark.parametrize("pixels", [120, 300], ids=["over-limit-warning", "over-twice-error"])
def test_decompression_bomb(make_coco, monkeypatch, pixels):
    # PIL warns above MAX_IMAGE_PIXELS and raises above twice it: both are errors here.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    root = make_coco({"big.png": rgb(10, pixels // 10), "ok.png": rgb(5, 5)})
    path = root / "val2017" / "big.png"
    with pytest.raises(DataError) as exc:
        load_rgb(path)
    assert str(exc.value).startswith(f"{path}: image of {pixels} pixels is over PIL's")
    assert "MAX_IMAGE_PIXELS = 100" in str(exc.value)
    ds = CocoDetection(root, "val2017")
    assert ds[1][0].shape == (3, 5, 5)
    with pytest.raises(DataError, match=re.escape(f"{path}: image of {pixels} pixels")):
        ds[0]
    found = _by_kind(check_images(json.loads(_ann_path(root).read_text()), root / "val2017"))
    assert list(found) == ["image_too_large"]
    assert found["image_too_large"].examples == [f"big.png ({pixels} pixels)"]


def test_data_loader_worker_error_is_one_message(make_coco):
    root = make_coco({"ok.png": rgb(8, 8), "bad.jpg": b"\x00not a JPEG" * 10})
    loader = DataLoader(CocoDetection(root, "val2017"), batch_size=None, num_workers=1)
    try:
        list(loader)
    except DataError as exc:  # not pytest.raises: its traceback would keep the worker alive
        raw, msg = str(exc), user_message(exc)
    else:
        pytest.fail("no DataError")
    assert raw.startswith("Caught DataError in DataLoader worker process 0.") and "Traceback" in raw
    path = root / "val2017" / "bad.jpg"
    assert msg.startswith(f"{path}: cannot read image (UnidentifiedImageError: ")
    assert msg.endswith(" (in DataLoader worker 0)") and "Traceback" not in msg


def test_user_message_keeps_a_multi_line_message_and_plain_errors():
    assert user_message(DataError("x.json: bad")) == "x.json: bad"
    wrapped = DataError(
        "Caught DataError in DataLoader worker process 3.\nOriginal Traceback (most recent call "
        'last):\n  File "w.py", line 1, in f\n    raise DataError(m)\n'
        "study.errors.DataError: a.jpg: first line\nsecond line\n"
    )
    assert user_message(wrapped) == "a.jpg: first line\nsecond line (in DataLoader worker 3)"


def test_check_lists_every_problem_at_once_with_counts(make_coco):
    anns = [
        {"image_id": 1, "bbox": [1, 1, 4, 4]},
        {"image_id": 1, "bbox": [1, 1, 4, 4], "category_id": 99},
        {"image_id": 9, "bbox": [1, 1, 4, 4]},
        {"image_id": 2, "bbox": [1, 1, 0, 4]},  # warning: dropped when loading
        {"image_id": 2, "bbox": [-2, 1, 4, 4]},  # warning: clipped
        {"image_id": 2, "bbox": [30, 30, 4, 4]},  # warning: outside the image
    ]
    images = {"a.png": rgb(10, 10), "b.png": rgb(10, 10), "gone.png": None}
    root = make_coco(images, anns=anns)

    def break_it(d: dict[str, Any]) -> None:
        for a in d["annotations"][:3]:
            del a["area"]
        d["annotations"][2]["iscrowd"] = 2

    _edit(root, break_it)
    box = [{"image_id": 1, "bbox": [1, 1, 4, 4]}]
    make_coco({"a.png": rgb(10, 10)}, anns=box, split="train2017")  # a clean second split
    report = check_dataset(root)
    assert [s.split for s in report.splits] == ["train2017", "val2017"]
    train, val = report.splits
    assert train.ok and not train.problems and not val.ok and not report.ok
    assert val.counts == {"images": 3, "annotations": 6, "categories": 3, "crowd": 0}
    got = {p.kind: (p.severity, p.count, p.examples) for p in val.problems}
    assert got == {
        "ann_unknown_image": ("error", 1, ["3 (image_id 9)"]),
        "ann_unknown_category": ("error", 1, ["2 (category_id 99)"]),
        "ann_bad_area": ("error", 3, ["1 (area missing)", "2 (area missing)", "3 (area missing)"]),
        "ann_bad_iscrowd": ("error", 1, ["3 (iscrowd 2)"]),
        "image_missing": ("error", 1, ["gone.png"]),
        "box_degenerate": ("warning", 1, ["4"]),
        "box_outside": ("warning", 1, ["6"]),
        "box_clipped": ("warning", 1, ["5"]),
    }
    text, ok = run_data_check(root)
    assert not ok
    assert "3 annotations without a finite number 'area' (e.g. ids 1 (area missing)," in text
    assert "warning  1 box with non-positive width/height (dropped when loading; " in text
    assert (
        "val2017: FAILED" not in text and "  FAILED: 5 kinds of error, 3 kinds of warning" in text
    )
    assert "Errors in 1 of 2 splits (val2017)" in text
    msg = _load_error(root)  # loading raises the errors only, in one paragraph
    assert msg.count(";") == 3 and "5 problems" not in msg and "4 problems" in msg


def test_warnings_alone_do_not_fail(make_coco):
    anns = [{"image_id": 1, "bbox": [5, 5, 0, 3]}, {"image_id": 1, "bbox": [8, 8, 5, 5]}]
    root = make_coco({"a.png": rgb(10, 10)}, anns=anns)
    text, ok = run_data_check(root, split="val2017")
    assert ok and "warning  1 box partly outside its image (clipped when loading)" in text
    assert "  OK: 0 kinds of error, 2 kinds of warning" in text
    assert CocoDetection(root, "val2017").dropped_ann_ids == [1]


def test_many_examples_are_cut_short():
    d = coco_dict(
        [{"id": 1, "file_name": "a.png", "width": 9, "height": 9}],
        [{"image_id": 1, "bbox": [0, 0, 2, 2], "area": None} for _ in range(8)],
    )
    (p,) = check_annotations(d)
    assert p.count == 8 and len(p.examples) == 5
    assert p.describe(2) == (
        "8 annotations without a finite number 'area' (e.g. ids 1 (area None), 2 (area None), ...)"
    )
    assert error_message(Path("r/annotations/x.json"), [p]) == (
        "r/annotations/x.json: 8 annotations without a finite number 'area' (e.g. ids "
        "1 (area None), 2 (area None), 3 (area None), ...). Run `study data check r` for the "
        "full list."
    )


def test_unreadable_split_is_reported_and_the_others_checked(make_coco):
    root = make_coco({"a.png": rgb(8, 8)}, anns=[{"image_id": 1, "bbox": [1, 1, 4, 4]}])
    make_coco({"a.png": rgb(8, 8)}, split="train2017")
    _ann_path(root, "train2017").write_text('{"images": [')
    report = check_dataset(root)
    train, val = report.splits
    assert val.ok and not train.ok
    assert train.problems[0].message.startswith("invalid or truncated JSON")


def test_missing_split_or_folder(make_coco, tmp_path):
    root = make_coco({"a.png": rgb(8, 8)})
    with pytest.raises(DataError, match=r"instances_test2017\.json: annotation file not found "):
        check_dataset(root, split="test2017")
    with pytest.raises(DataError, match="no annotation files"):
        run_data_check(tmp_path / "nowhere")


def test_a_split_without_a_single_box_is_an_error(make_coco):
    """Images but no annotation (or only crowd regions): nothing to train on or to score."""
    root = make_coco({"a.png": rgb(10, 10), "b.png": rgb(10, 10)})
    text, ok = run_data_check(root)
    assert not ok and "none of the 2 images has an annotation (a non-crowd box)" in text
    crowd = [{"image_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 1}]
    root = make_coco({"a.png": rgb(10, 10)}, anns=crowd)
    assert not run_data_check(root)[1]


def test_decode_finds_an_image_truncated_after_its_header(make_coco):
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    root = make_coco(
        {"cut.jpg": data[: len(data) // 2], "whole.jpg": data},
        anns=[{"image_id": 2, "bbox": [1, 1, 8, 8]}],
        sizes={"cut.jpg": (64, 64), "whole.jpg": (64, 64)},
    )
    assert run_data_check(root)[1]  # headers only: the cut file passes
    text, ok = run_data_check(root, decode=True)
    assert not ok and "1 image file PIL cannot open" in text and "cut.jpg (OSError)" in text
    assert "whole.jpg" not in text


def test_empty_split_and_missing_image_folder(make_coco):
    root = make_coco({})
    report = check_dataset(root)
    assert [p.kind for p in report.splits[0].problems] == ["no_images", "image_dir_missing"]


def test_clean_small_dataset_has_no_problems(make_coco):
    root = make_coco(
        {"a.png": rgb(20, 30), "b.jpg": rgb(16, 16)},
        anns=[{"image_id": 1, "bbox": [2, 3, 10, 5]}, {"image_id": 2, "bbox": [0, 0, 16, 16]}],
    )
    text, ok = run_data_check(root)
    assert ok and "OK: no problems" in text and "No errors in 1 split." in text


def test_synthetic_dataset_has_no_problems(synthetic_root):
    root, _ = synthetic_root
    report = check_dataset(root)
    assert report.ok and [s.problems for s in report.splits] == [[], []]


def test_real_coco_subset_has_no_errors(coco_subset):
    report = check_dataset(coco_subset)
    assert report.ok and {s.split for s in report.splits} == {"train2017", "val2017"}
    val = next(s for s in report.splits if s.split == "val2017")
    assert val.counts == {"images": 158, "annotations": 1424, "categories": 80, "crowd": 16}
