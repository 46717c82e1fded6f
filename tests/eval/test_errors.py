"""The TIDE error breakdown (study/eval/errors.py) against ``tidecv`` 1.0.1, TIDE's own package.

The expected values of the small case below are tidecv's (``TIDE().evaluate(gt, dets,
mode=TIDE.BOX)``, then ``fix_main_errors()``, ``fix_special_errors()``, ``count_errors()`` and
``fix_main_errors(qual=AREA[i])``), computed once: tidecv imports OpenCV at import time and is
not a dependency. Where tidecv is installed, the last test compares the two on a generated case
of the COCO subset (crowd regions, 80 classes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.eval.errors import MAIN_ERRORS, SIZES, size_of, tide

IMAGES = [{"id": i, "width": 200, "height": 200} for i in (1, 2, 3)]
ANNOTATIONS = [
    {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "bbox": [10, 10, 50, 50],
        "area": 2500,
        "iscrowd": 0,
    },
    {
        "id": 2,
        "image_id": 1,
        "category_id": 2,
        "bbox": [100, 100, 20, 20],
        "area": 400,
        "iscrowd": 0,
    },
    {
        "id": 3,
        "image_id": 1,
        "category_id": 1,
        "bbox": [0, 120, 120, 80],
        "area": 9600,
        "iscrowd": 0,
    },
    {
        "id": 4,
        "image_id": 2,
        "category_id": 2,
        "bbox": [50, 50, 100, 100],
        "area": 10000,
        "iscrowd": 0,
    },
    {"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 1},
    {
        "id": 6,
        "image_id": 2,
        "category_id": 1,
        "bbox": [160, 160, 30, 30],
        "area": 900,
        "iscrowd": 0,
    },
    {
        "id": 7,
        "image_id": 3,
        "category_id": 2,
        "bbox": [20, 20, 60, 60],
        "area": 3600,
        "iscrowd": 0,
    },
]
# Image 9 is not in the ground truth (left out, as tidecv does). Image 1: a true positive, its
# duplicate, a detection of class 1 on class 2's object (cls), a half-box (loc), two
# background-only boxes; image 2: a detection inside the crowd region (ignored), a loose box
# (loc); image 3: a wrong class poorly placed (both) and a background box.
DETECTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [12, 12, 50, 50], "score": 0.8},
    {"image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 20], "score": 0.7},
    {"image_id": 1, "category_id": 1, "bbox": [0, 120, 60, 80], "score": 0.6},
    {"image_id": 1, "category_id": 2, "bbox": [150, 10, 30, 30], "score": 0.95},
    {"image_id": 1, "category_id": 2, "bbox": [95, 95, 40, 10], "score": 0.3},
    {"image_id": 2, "category_id": 2, "bbox": [50, 50, 100, 100], "score": 0.5},
    {"image_id": 2, "category_id": 1, "bbox": [2, 2, 30, 30], "score": 0.85},
    {"image_id": 2, "category_id": 2, "bbox": [40, 40, 80, 80], "score": 0.4},
    {"image_id": 2, "category_id": 2, "bbox": [0, 0, 200, 200], "score": 0.2},
    {"image_id": 3, "category_id": 1, "bbox": [100, 100, 20, 20], "score": 0.1},
    {"image_id": 3, "category_id": 1, "bbox": [40, 40, 60, 60], "score": 0.45},
    {"image_id": 9, "category_id": 1, "bbox": [1, 1, 20, 20], "score": 0.99},
]
GROUND_TRUTH = {"images": IMAGES, "annotations": ANNOTATIONS}

TIDECV = {
    "ap50": 33.415841584158414,
    "delta": {
        "cls": 16.4191419142,
        "loc": 0.0,
        "both": 0.0,
        "dupe": 2.7227722772,
        "bkg": 8.4158415842,
        "miss": 16.8316831683,
        "FP": 16.5841584158,
        "FN": 29.2079207921,
    },
    "counts": {"cls": 1, "loc": 3, "both": 1, "dupe": 1, "bkg": 3, "miss": 2},
    "by_size": {
        "small": {"cls": 16.4191419142, "bkg": 8.4158415842, "miss": 12.6237623762},
        "medium": {"dupe": 2.7227722772, "miss": 4.2079207921},
        "large": {},
    },
}


def test_the_small_case_equals_tidecv() -> None:
    got = tide(GROUND_TRUTH, DETECTIONS)
    assert got.ap50 == pytest.approx(TIDECV["ap50"], abs=1e-9)
    for kind, value in TIDECV["delta"].items():
        assert got.delta[kind] == pytest.approx(value, abs=1e-8), kind
    assert got.counts == TIDECV["counts"]
    for size in SIZES:
        want = {kind: TIDECV["by_size"][size].get(kind, 0.0) for kind in MAIN_ERRORS}
        assert got.delta_by_size[size] == pytest.approx(want, abs=1e-8), size
    assert got.detections == 12 and got.ground_truths == 6  # image 9's and the crowd left out


def test_perfect_detections_have_no_error_and_a_missing_class_costs_its_ap() -> None:
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in ANNOTATIONS
        if not a["iscrowd"]
    ]
    got = tide(GROUND_TRUTH, perfect)
    assert got.ap50 == pytest.approx(100.0)
    assert all(v == 0 for v in got.delta.values()) and not any(got.counts.values())
    # every detection of class 2 gone: class 2's AP is 0, fixing its misses restores 100
    got = tide(GROUND_TRUTH, [d for d in perfect if d["category_id"] == 1])
    assert got.ap50 == pytest.approx(50.0) and got.counts["miss"] == 3
    assert got.delta["miss"] == pytest.approx(50.0) and got.delta["FN"] == pytest.approx(50.0)


def test_sizes_follow_tides_qualifiers() -> None:
    assert [
        size_of(b) for b in ([0, 0, 32, 32], [0, 0, 33, 32], [0, 0, 96, 96], [0, 0, 97, 96])
    ] == [
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_against_tidecv_where_installed() -> None:
    """A generated case on the COCO subset: jittered, rescaled and relabelled copies of the
    ground truth plus random boxes."""
    tidecv = pytest.importorskip("tidecv")
    from tidecv.errors.main_errors import (
        BackgroundError,
        BoxError,
        ClassError,
        DuplicateError,
        MissedError,
        OtherError,
    )

    path = Path(__file__).resolve().parents[3] / "shared/data/coco-subset/annotations"
    if not (path / "instances_val2017.json").is_file():
        pytest.skip("no COCO subset")
    gt = json.loads((path / "instances_val2017.json").read_text())
    rng = np.random.default_rng(0)
    cats = [c["id"] for c in gt["categories"]]
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(int(rng.integers(0, 3))):
            s, d = rng.uniform(0.5, 1.5, 2), rng.normal(0, 0.25, 2)
            c = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
            box = [x + d[0] * w, y + d[1] * h, w * s[0], h * s[1]]
            dets.append(
                {"image_id": a["image_id"], "category_id": c, "bbox": box, "score": rng.random()}
            )
    g, p = tidecv.Data("gt"), tidecv.Data("dets")
    for im in gt["images"]:
        g.add_image(im["id"], str(im["id"]))
    for a in gt["annotations"]:
        if a["iscrowd"]:
            g.add_ignore_region(a["image_id"], a["category_id"], a["bbox"])
        else:
            g.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    for d in dets:
        p.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    evaluator = tidecv.TIDE()
    evaluator.evaluate(g, p, mode=tidecv.TIDE.BOX)
    run = next(iter(evaluator.runs.values()))
    names = {
        ClassError: "cls",
        BoxError: "loc",
        OtherError: "both",
        DuplicateError: "dupe",
        BackgroundError: "bkg",
        MissedError: "miss",
    }
    got = tide(gt, dets)
    assert got.ap50 == pytest.approx(run.ap, abs=1e-9)
    for error, value in run.fix_main_errors().items():
        assert got.delta[names[error]] == pytest.approx(value, abs=1e-9)
    assert got.counts == {names[e]: n for e, n in run.count_errors().items()}


def test_the_error_table_and_figure_have_the_seed_spread_and_are_reproducible(
    tmp_path: Path,
) -> None:
    from study.report.errors import error_figure, error_table

    rows = []
    for strategy, shift in (("none", 0.0), ("asff", -1.0)):
        for seed in (0, 1, 2):
            result = tide(GROUND_TRUTH, DETECTIONS)
            base = {"experiment": f"fusion/{strategy}", "strategy": strategy, "seed": seed}
            rows.append({**base, "size": "all", "error": "AP50", "dAP": result.ap50, "count": None})
            for kind, value in result.delta.items():
                rows.append(
                    {**base, "size": "all", "error": kind, "dAP": value + shift + seed, "count": 1}
                )
            for size in SIZES:
                for kind in MAIN_ERRORS:
                    rows.append({**base, "size": size, "error": kind, "dAP": 1.0, "count": 1})
    rows = pd.DataFrame(rows)
    shown, numeric = error_table(rows, ["all"])
    numeric = numeric.set_index("strategy")
    assert numeric.loc["none", "cls"] == pytest.approx(TIDECV["delta"]["cls"] + 1)  # seeds 0, 1, 2
    assert numeric.loc["none", "cls_std"] == pytest.approx(1.0)
    assert numeric.loc["asff", "cls"] == pytest.approx(TIDECV["delta"]["cls"])
    assert "±" in shown.loc[0, "Δ cls"] and list(shown.columns)[:2] == ["strategy", "AP50"]
    first = error_figure(rows, tmp_path, "caption")
    svg = (tmp_path / "error_breakdown.svg").read_bytes()
    error_figure(rows, tmp_path, "caption")
    assert (tmp_path / "error_breakdown.svg").read_bytes() == svg and len(first) == 2
