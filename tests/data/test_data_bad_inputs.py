"""Every kind of bad input gives a DataError naming the file (or counts it), never a traceback."""

from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest
import torch
from data_helpers import coco_dict, rgb
from PIL import Image

from study.data import CocoDetection
from study.errors import DataError, StudyError

ANN = "instances_val2017.json"


def _ann_path(root):
    return root / "annotations" / ANN


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match=ANN) as exc:
        CocoDetection(tmp_path, "val2017")
    assert "not found" in str(exc.value)
    assert isinstance(exc.value, StudyError)


@pytest.mark.parametrize("text", ['{"images": [', "not json at all", ""])
def test_invalid_or_truncated_json(make_coco, text):
    root = make_coco({"a.png": rgb(8, 8)})
    _ann_path(root).write_text(text)
    with pytest.raises(DataError, match=ANN) as exc:
        CocoDetection(root, "val2017")
    assert "invalid or truncated JSON" in str(exc.value)


def test_truncated_real_json_file(make_coco):
    root = make_coco({"a.png": rgb(8, 8)}, anns=[{"image_id": 1, "bbox": [1, 1, 4, 4]}])
    full = _ann_path(root).read_text()
    _ann_path(root).write_text(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated JSON"):
        CocoDetection(root, "val2017")


@pytest.mark.parametrize("missing", ["images", "annotations", "categories"])
def test_missing_top_level_key(make_coco, missing):
    root = make_coco({"a.png": rgb(8, 8)})
    d = json.loads(_ann_path(root).read_text())
    del d[missing]
    _ann_path(root).write_text(json.dumps(d))
    with pytest.raises(DataError, match=f"{ANN}: missing key '{missing}'"):
        CocoDetection(root, "val2017")


def test_top_level_not_an_object(make_coco):
    root = make_coco({"a.png": rgb(8, 8)})
    _ann_path(root).write_text("[1, 2]")
    with pytest.raises(DataError, match=f"{ANN}: expected a JSON object"):
        CocoDetection(root, "val2017")


def test_unknown_category_id(make_coco):
    root = make_coco(
        {"a.png": rgb(8, 8)}, anns=[{"image_id": 1, "bbox": [1, 1, 4, 4], "category_id": 999}]
    )
    expect = (
        f"{ANN}: 1 annotation whose 'category_id' is not in 'categories' "
        "(e.g. id 1 (category_id 999))"
    )
    with pytest.raises(DataError, match=re.escape(expect)):
        CocoDetection(root, "val2017")


def test_annotation_for_unknown_image(make_coco):
    root = make_coco({"a.png": rgb(8, 8)}, anns=[{"image_id": 7, "bbox": [1, 1, 4, 4]}])
    with pytest.raises(
        DataError, match=re.escape("'image_id' is not in 'images' (e.g. id 1 (image_id 7))")
    ):
        CocoDetection(root, "val2017")


def test_invalid_bbox_value(make_coco):
    root = make_coco({"a.png": rgb(8, 8)}, anns=[{"image_id": 1, "bbox": [1, 1, 4]}])
    expect = (
        f"{ANN}: 1 annotation without a 'bbox' of 4 finite numbers (e.g. id 1 (bbox [1, 1, 4]))"
    )
    with pytest.raises(DataError, match=re.escape(expect)):
        CocoDetection(root, "val2017")


def test_empty_split(make_coco):
    root = make_coco({})
    with pytest.raises(DataError, match=f"{ANN}: split 'val2017' has no images"):
        CocoDetection(root, "val2017")


def test_missing_image_file(make_coco):
    root = make_coco({"a.png": rgb(8, 8), "gone.jpg": None})
    ds = CocoDetection(root, "val2017")  # the index loads; the file is checked when read
    assert ds[0][0].shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"gone\.jpg: image file not found"):
        ds[1]


def test_corrupt_image_bytes(make_coco):
    root = make_coco({"bad.jpg": b"\x00garbage, not a JPEG" * 10})
    ds = CocoDetection(root, "val2017")
    with pytest.raises(DataError, match=r"bad\.jpg: cannot read image"):
        ds[0]


def test_truncated_jpeg(make_coco):
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    root = make_coco({"cut.jpg": data[: len(data) // 2]}, sizes={"cut.jpg": (64, 64)})
    with pytest.raises(DataError, match=r"cut\.jpg: cannot read image"):
        CocoDetection(root, "val2017")[0]


def test_non_positive_boxes_dropped_and_counted(make_coco, caplog):
    anns = [
        {"image_id": 1, "bbox": [2, 2, 10, 10]},
        {"image_id": 1, "bbox": [5, 5, 0, 10]},
        {"image_id": 1, "bbox": [5, 5, 10, -3]},
    ]
    root = make_coco({"a.png": rgb(40, 40)}, anns=anns)
    with caplog.at_level(logging.WARNING, logger="study.data.coco"):
        ds = CocoDetection(root, "val2017")
    assert ds.box_stats["dropped_degenerate"] == 2
    assert ds.dropped_ann_ids == [2, 3]
    assert ds.box_stats["kept"] == 1 and ds.box_stats["clipped"] == 0
    assert ds[0][1]["boxes"].tolist() == [[2.0, 2.0, 12.0, 12.0]]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert ANN in warnings[0] and "2 dropped with non-positive width/height" in warnings[0]


def test_boxes_outside_image_clipped_and_counted(make_coco, caplog):
    anns = [
        {"image_id": 1, "bbox": [-5, 10, 20, 10]},  # left edge outside
        {"image_id": 1, "bbox": [25, 30, 20, 20]},  # right/bottom outside
        {"image_id": 1, "bbox": [50, 50, 5, 5]},  # entirely outside: empty after clip
        {"image_id": 1, "bbox": [1, 1, 5, 5]},
    ]  # inside
    root = make_coco({"a.png": rgb(40, 30)}, anns=anns)  # H=40, W=30
    with caplog.at_level(logging.WARNING, logger="study.data.coco"):
        ds = CocoDetection(root, "val2017")
    assert ds.box_stats["clipped"] == 3
    assert ds.box_stats["dropped_outside"] == 1 and ds.box_stats["kept"] == 3
    assert ds.dropped_ann_ids == [3]
    assert ds[0][1]["boxes"].tolist() == [
        [0.0, 10.0, 15.0, 20.0],
        [25.0, 30.0, 30.0, 40.0],
        [1.0, 1.0, 6.0, 6.0],
    ]
    assert "3 boxes clipped" in caplog.text and ANN in caplog.text


def test_json_size_disagrees_with_file(make_coco):
    # The JSON says 100x100, the file is 50 wide x 40 high: the boxes are in the JSON's frame,
    # so neither size can be trusted. Loading the sample names the file and both sizes.
    root = make_coco(
        {"a.png": rgb(40, 50)},
        anns=[{"image_id": 1, "bbox": [30, 20, 40, 40]}],
        sizes={"a.png": (100, 100)},
    )
    ds = CocoDetection(root, "val2017")
    with pytest.raises(DataError) as exc:
        ds[0]
    msg = str(exc.value)
    assert msg.startswith(str(root / "val2017" / "a.png") + ": the image is 50x40")
    assert ANN in msg and "width 100, height 100" in msg


def _palette_image() -> Image.Image:
    img = Image.new("P", (6, 4))
    img.putpalette([0, 0, 0, 200, 10, 30] + [0] * (256 * 3 - 6))
    img.putpixel((1, 1), 1)
    return img


@pytest.mark.parametrize(
    "name, make, expect",
    [
        ("gray.png", lambda: Image.new("L", (6, 4), 77), (77, 77, 77)),
        ("rgba.png", lambda: Image.new("RGBA", (6, 4), (10, 20, 30, 0)), (10, 20, 30)),
        ("la.png", lambda: Image.new("LA", (6, 4), (50, 128)), (50, 50, 50)),
        ("pal.png", _palette_image, (200, 10, 30)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (6, 4), (0, 0, 0, 0)), (255, 255, 255)),
        ("bw.png", lambda: Image.new("1", (6, 4), 1), (255, 255, 255)),
        (
            "gray16.png",
            lambda: Image.fromarray(np.full((4, 6), 257 * 100, np.uint16)),
            (100, 100, 100),
        ),
    ],
)
def test_other_image_modes_become_rgb(make_coco, name, make, expect):
    root = make_coco({name: make()})
    image, _ = CocoDetection(root, "val2017")[0]
    assert image.shape == (3, 4, 6) and image.dtype == torch.uint8
    assert image[:, 1, 1].tolist() == list(expect)


def test_coco_dict_helper_is_valid_for_pycocotools():
    d = coco_dict(
        [{"id": 1, "file_name": "a.png", "width": 5, "height": 5}],
        [{"image_id": 1, "bbox": [0, 0, 2, 2]}],
    )
    assert d["annotations"][0]["area"] == 4 and d["annotations"][0]["id"] == 1
