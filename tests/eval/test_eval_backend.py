"""eval.backend: faster-coco-eval scores exactly as pycocotools does (the reference)."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from study.errors import ConfigError
from study.eval.coco_eval import METRIC_KEYS, coco_metrics
from study.eval.generated import coco_from_dict, generated_detections, generated_ground_truth

pytest.importorskip("faster_coco_eval")

KEYS = (*METRIC_KEYS, "ARmax100")
SUBSET = Path(
    os.environ.get("STUDY_COCO_SUBSET")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-subset"
)


_coco = coco_from_dict


def assert_same(coco: COCO, results: list[dict], img_ids: list[int] | None = None) -> None:
    ref = coco_metrics(coco, results, img_ids, backend="pycocotools")
    fast = coco_metrics(coco, results, img_ids, backend="faster-coco-eval")
    for key in KEYS:
        if ref[key] is None:
            assert fast[key] is None, key
        else:
            # the same matches and the same precision arrays; only the last bit of a float
            # sum may differ (measured: at most 4e-18)
            assert fast[key] == pytest.approx(ref[key], abs=1e-12, rel=0), key
    assert any(ref[k] not in (None, 0.0) for k in KEYS)  # a non-trivial comparison


def test_same_metrics_on_real_coco_subset() -> None:
    ann = SUBSET / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        pytest.skip(f"COCO subset not found at {SUBSET}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann))
    results = generated_detections(coco.dataset, per_image=100, seed=1)
    assert_same(coco, results)
    some = sorted(coco.getImgIds())[::2]  # a subset run scores only its own images
    assert_same(coco, [r for r in results if r["image_id"] in set(some)], some)


def test_same_metrics_on_generated_data_with_crowds() -> None:
    gt = generated_ground_truth(num_images=60, seed=2)
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert_same(_coco(gt), generated_detections(gt, per_image=30, seed=3))


def test_no_detections_gives_zero_with_both_backends() -> None:
    coco = _coco(generated_ground_truth(num_images=5, seed=4))
    with pytest.warns(RuntimeWarning, match="no detections"):
        fast = coco_metrics(coco, [], backend="faster-coco-eval")
    assert fast["AP"] == 0.0 and not math.isnan(fast["AP"])


def test_unknown_backend_is_a_config_error() -> None:
    coco = _coco(generated_ground_truth(num_images=2, seed=5))
    with pytest.raises(ConfigError, match="eval.backend"):
        coco_metrics(coco, generated_detections(coco.dataset, 3), backend="cocoapi")
