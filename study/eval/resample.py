"""COCO AP for any weighting of the validation images: the engine of the bootstrap intervals.

``COCOeval.evaluate`` matches detections to ground truth image by image; ``accumulate`` then
sorts every detection of a category by score and integrates precision over recall. Resampling
images (a bootstrap) changes only how often each image counts, not the matches, so
:class:`ImageWeightedAP` runs ``evaluate`` once and recomputes the accumulation for many image
weight vectors at once (numpy, no Python loop over detections). With every weight 1 it gives
COCOeval's numbers exactly (tested). A weight ``w`` counts an image ``w`` times: its
ground truth adds ``w`` to the number of positives, and each of its detections adds ``w`` true or
false positives at its place in the score order.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from study.eval.coco_eval import load_results

# metric -> (area index into COCOeval's areaRng: all, small, medium, large; IoU index or None)
METRICS = {
    "AP": (0, None),
    "AP50": (0, 0),
    "AP75": (0, 5),
    "APs": (1, None),
    "APm": (2, None),
    "APl": (3, None),
}


class _Curve:
    """One (category, area range): detections in COCOeval's score order and their images.

    Precision can only rise at a true positive, so the interpolated precision at a recall
    threshold (COCOeval: the maximum precision at any later point of the curve) is the maximum
    over the later *true-positive* points; false positives enter only through the running count
    of counted detections. That keeps the work per replicate at one pass over the detections plus
    one over the true positives of each IoU threshold.
    """

    def __init__(self, entries: list[tuple[int, dict[str, Any]]], max_det: int) -> None:
        scores = np.concatenate([np.asarray(e["dtScores"][:max_det], float) for _, e in entries])
        order = np.argsort(-scores, kind="mergesort")  # COCOeval's order, ties included
        dtm = np.concatenate([e["dtMatches"][:, :max_det] for _, e in entries], axis=1)[:, order]
        dt_ig = np.concatenate([e["dtIgnore"][:, :max_det] for _, e in entries], axis=1)[:, order]
        det_img = np.concatenate(
            [np.full(min(len(e["dtScores"]), max_det), i) for i, e in entries]
        ).astype(np.int64)[order]
        counted = ~dt_ig  # (T, D): a true or a false positive at IoU threshold t
        keep = counted.any(axis=0)  # ignored at every IoU: adds no point to the curve
        counted, dtm = counted[:, keep], dtm[:, keep]
        self.det_img = det_img[keep]  # (D,) index into the image list
        # The distinct rows of `counted` (usually one: the IoU matters only through matches to
        # crowd boxes) and, per threshold, the positions of its true positives.
        self.counted, self.counted_of_t = np.unique(counted, axis=0, return_inverse=True)
        self.counted_of_t = self.counted_of_t.reshape(-1)
        self.tp_pos = [np.flatnonzero((dtm[t] > 0) & counted[t]) for t in range(len(dtm))]
        self.gt_img = np.concatenate(
            [np.full(int(np.count_nonzero(e["gtIgnore"] == 0)), i) for i, e in entries]
        ).astype(np.int64)  # one entry per non-ignored ground truth

    def precision(self, weights: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
        """(R, T, len(rec_thrs)) interpolated precision for image weights (R, I); NaN where the
        weighted ground truth is empty (COCOeval's -1: the curve does not count)."""
        npig = weights[:, self.gt_img].sum(axis=1)  # (R,)
        r, t = weights.shape[0], len(self.tp_pos)
        out = np.zeros((r, t, len(rec_thrs)))
        w = weights[:, self.det_img]  # (R, D)
        counted = [np.cumsum(w * row, axis=1) for row in self.counted]  # TP + FP so far
        for ti, pos in enumerate(self.tp_pos):
            if not len(pos):
                continue  # no true positive: precision 0 everywhere, as COCOeval
            tp = np.cumsum(w[:, pos], axis=1)  # (R, P) true positives so far, at each of them
            pr = tp / (counted[self.counted_of_t[ti]][:, pos] + np.spacing(1))
            envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                rc = tp / npig[:, None]
            # COCOeval's searchsorted(rc, thresholds, "left"), row by row: exact, as the float
            # comparison of a recall of exactly 0.7 with linspace's 0.7000000000000001 matters.
            for ri in range(r):
                if npig[ri] == 0:
                    continue
                idx = np.searchsorted(rc[ri], rec_thrs, side="left")
                inside = idx < len(pos)
                out[ri, ti, inside] = envelope[ri, idx[inside]]
        out[npig == 0] = np.nan
        return out


class ImageWeightedAP:
    """AP, AP50, AP75, APs, APm, APl of one detections set for many image weightings.

    ``image_ids`` are the scored images (their order defines the weight columns); ``results``
    are COCO result dicts. ``metrics(weights)`` takes weights (R, I) and returns each metric as
    an (R,) array of fractions (NaN where COCOeval would report -1).
    """

    def __init__(
        self, coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int]
    ) -> None:
        self.image_ids = sorted(set(int(i) for i in image_ids))
        coco_dt = load_results(coco_gt, results)
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_dt, "bbox")
            ev.params.imgIds = self.image_ids
            ev.evaluate()
        p = ev.params
        self.rec_thrs = np.asarray(p.recThrs)
        n_img, n_area, max_det = len(p.imgIds), len(p.areaRng), p.maxDets[-1]
        self.curves: list[list[_Curve | None]] = []  # [area][category]
        for a in range(n_area):
            per_cat = []
            for k in range(len(p.catIds)):
                base = k * n_area * n_img + a * n_img
                entries = [
                    (i, ev.evalImgs[base + i])
                    for i in range(n_img)
                    if ev.evalImgs[base + i] is not None
                ]
                per_cat.append(_Curve(entries, max_det) if entries else None)
            self.curves.append(per_cat)
        self._cache: dict[int, np.ndarray | None] = {}

    def metrics(self, weights: np.ndarray, chunk: int = 64) -> dict[str, np.ndarray]:
        """Each metric of :data:`METRICS` for every row of ``weights`` (R, I), ``chunk`` rows at
        a time (memory: chunk x 10 IoUs x detections of one category)."""
        weights = np.atleast_2d(np.asarray(weights, float))
        if weights.shape[1] != len(self.image_ids):
            raise ValueError(
                f"weights have {weights.shape[1]} columns for {len(self.image_ids)} images"
            )
        parts = [self._metrics(weights[i : i + chunk]) for i in range(0, len(weights), chunk)]
        return {k: np.concatenate([part[k] for part in parts]) for k in METRICS}

    def _metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, (a, t) in METRICS.items():
            if a not in self._cache:  # (R, T, 101, K) precision of every category of area a
                curves = [c.precision(weights, self.rec_thrs) for c in self.curves[a] if c]
                self._cache[a] = np.stack(curves, axis=3) if curves else None
            prec = self._cache[a]
            if prec is None:
                out[name] = np.full(weights.shape[0], np.nan)
                continue
            sel = prec if t is None else prec[:, t : t + 1]
            flat = sel.reshape(sel.shape[0], -1)
            with warnings.catch_warnings():  # a row without ground truth: NaN, as COCOeval's -1
                warnings.simplefilter("ignore", RuntimeWarning)
                out[name] = np.nanmean(flat, axis=1)
        self._cache.clear()
        return out

    def full(self) -> dict[str, float | None]:
        """The metrics with every image counted once (= COCOeval's)."""
        values = self.metrics(np.ones((1, len(self.image_ids))))
        return {k: (None if np.isnan(v[0]) else float(v[0])) for k, v in values.items()}
