"""COCO AP for weighted images (study/eval/resample.py) against plain pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from study.eval.coco_eval import coco_metrics
from study.eval.generated import coco_from_dict
from study.eval.resample import METRICS, ImageWeightedAP

SIZES = ((6, 12), (20, 60), (90, 150))  # small, medium, large box sides (COCO's buckets)


def _dataset(n_images: int, seed: int) -> tuple[dict, list[dict]]:
    """A COCO dict (3 categories, every size, one crowd box) and noisy detections with unique
    scores: shifted true boxes, missed ones, and false positives."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 320, "height": 320})
        for _ in range(int(rng.integers(2, 7))):
            lo, hi = SIZES[int(rng.integers(0, 3))]
            w, h = rng.uniform(lo, hi, 2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 320 - h)
            cat = int(rng.integers(1, 4))
            crowd = int(len(anns) == 3)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            if rng.random() < 0.8:  # found, with some localisation error
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                box = [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]]
                dets.append({"image_id": i, "category_id": cat, "bbox": box})
        for _ in range(int(rng.integers(0, 5))):  # false positives
            w, h = rng.uniform(8, 120, 2)
            box = [*rng.uniform(0, 200, 2), w, h]
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 4)), "bbox": box})
    for d, s in zip(dets, rng.permutation(len(dets)) / len(dets) + 0.001, strict=True):
        d["score"] = float(s)  # unique scores: no ties in the score order
    cats = [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


_coco = coco_from_dict


def _cocoeval(d: dict, dets: list[dict]) -> dict[str, float]:
    gt = _coco(d)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(METRICS, ev.stats[:6], strict=True))


def _replicate(d: dict, dets: list[dict], counts: np.ndarray) -> tuple[dict, list[dict]]:
    """The dataset with image i present counts[i] times (fresh ids for the copies)."""
    images, anns, out = [], [], []
    for img, count in zip(d["images"], counts, strict=True):
        for c in range(int(count)):
            new_id = img["id"] * 1000 + c
            images.append({**img, "id": new_id})
            for a in d["annotations"]:
                if a["image_id"] == img["id"]:
                    anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
            out += [{**x, "image_id": new_id} for x in dets if x["image_id"] == img["id"]]
    return {**d, "images": images, "annotations": anns}, out


def test_all_weights_one_gives_cocoeval_exactly() -> None:
    d, dets = _dataset(15, seed=0)
    ap = ImageWeightedAP(_coco(d), dets, [img["id"] for img in d["images"]])
    full = ap.full()
    reference = coco_metrics(_coco(d), dets)
    for metric in METRICS:
        assert full[metric] == pytest.approx(reference[metric], abs=1e-12), metric
    # counting every image twice changes nothing
    twice = ap.metrics(np.full((1, 15), 2.0))
    for metric in METRICS:
        assert twice[metric][0] == pytest.approx(full[metric], abs=1e-12), metric


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_integer_weights_equal_cocoeval_on_the_duplicated_images(seed: int) -> None:
    d, dets = _dataset(12, seed=seed)
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, (4, 12))
    counts[:, 0] = np.maximum(counts[:, 0], 1)  # keep some ground truth in every replicate
    ap = ImageWeightedAP(_coco(d), dets, [img["id"] for img in d["images"]])
    weighted = ap.metrics(counts.astype(float), chunk=3)
    for r, row in enumerate(counts):
        expected = _cocoeval(*_replicate(d, dets, row))
        for metric in METRICS:
            got, want = weighted[metric][r], expected[metric]
            if want < 0:  # COCOeval's "no ground truth of that size"
                assert np.isnan(got), metric
            else:
                assert got == pytest.approx(want, abs=1e-12), (r, metric)


def test_scoring_a_subset_of_images() -> None:
    d, dets = _dataset(10, seed=4)
    ids = [img["id"] for img in d["images"]][:6]
    ap = ImageWeightedAP(_coco(d), dets, ids)
    reference = coco_metrics(_coco(d), dets, img_ids=ids)
    for metric in METRICS:
        assert ap.full()[metric] == pytest.approx(reference[metric], abs=1e-12)
    with pytest.raises(ValueError, match="weights have 10 columns for 6 images"):
        ap.metrics(np.ones((1, 10)))


def test_no_detections_scores_zero() -> None:
    d, _ = _dataset(4, seed=5)
    ap = ImageWeightedAP(_coco(d), [], [img["id"] for img in d["images"]])
    assert ap.full()["AP"] == 0.0
