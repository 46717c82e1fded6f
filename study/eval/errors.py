"""Where a detector's AP goes: the TIDE error breakdown (Bolya et al., ECCV 2020, "TIDE: A General
Toolbox for Identifying Object Detection Errors"), for boxes.

Every false positive at the foreground IoU (``pos``, 0.5) is put in the first class that fits,
in TIDE's order: **loc** (IoU with a ground truth of its class in [``bg``, ``pos``]), **cls** (IoU
>= ``pos`` with one of another class), **dupe** (IoU >= ``pos`` with its class's ground truth
that a higher-scoring detection already matched), **bkg** (IoU <= ``bg``, 0.1, with every
ground truth), **both** (the rest: wrong class and poorly localised). A ground truth that no
detection matched and no loc/cls error points at is **miss**. Each type's dAP is AP50 (TIDE's
101-point interpolation, mean over classes) after fixing every error of that type alone, minus
AP50 as it is: a loc or cls error becomes a true positive (only the highest-scoring one per
ground truth; the others are dropped), a dupe, bkg or both error is dropped, a miss leaves the
ground truth count. ``FP`` and ``FN`` are TIDE's special errors: every false positive scored
below every true positive, and every unmatched ground truth removed.

Per object size, an error is counted in the size of its ground truth (loc, cls, miss) or of
the detection (dupe, bkg, both), by box area w x h in original pixels and COCO's thresholds,
as TIDE's qualifiers do. Crowd annotations are ignore regions, as in TIDE's COCO loader.

This is an implementation of TIDE's rules (its package, ``tidecv``, pins OpenCV and is
unmaintained), checked against ``tidecv`` 1.0.1 in tests/eval/test_errors.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

MAIN_ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")
SPECIAL_ERRORS = ("FP", "FN")
SIZES = ("small", "medium", "large")
SMALL, LARGE = 32.0**2, 96.0**2


def size_of(box: Sequence[float]) -> str:
    """TIDE's size qualifier of an XYWH box: area <= 32², <= 96², above."""
    area = float(box[2]) * float(box[3])
    return "small" if area <= SMALL else "medium" if area <= LARGE else "large"


@dataclass
class _Point:
    """One detection in an AP computation: score, true positive, its class."""

    score: float
    true: bool


@dataclass
class _Error:
    kind: str
    size: str  # of its ground truth (loc, cls, miss) or detection
    cls: int  # the class whose AP the unfixed point belongs to
    original: _Point | None  # the point as it is (None: not in the AP data, e.g. ignored)
    fixed_cls: int = -1
    fixed: _Point | None = None  # the point once fixed (None: dropped)
    gt_key: tuple[int, int] | None = None  # (image, gt index) a loc / cls fix would claim


@dataclass
class TideResult:
    """AP50 as it is and each error type's dAP (AP points, x100), overall and per size, the
    error counts, and the number of detections and ground truths."""

    ap50: float
    delta: dict[str, float]
    counts: dict[str, int]
    delta_by_size: dict[str, dict[str, float]]
    counts_by_size: dict[str, dict[str, int]]
    detections: int = 0
    ground_truths: int = 0


def _ap(points: Iterable[_Point], positives: int) -> float:
    """TIDE's AP of one class: precision made monotone, sampled at 101 recalls (left)."""
    if positives == 0:
        return 0.0
    pts = sorted(points, key=lambda p: -p.score)  # stable: ties keep insertion order
    if not pts:
        return 0.0
    true = np.array([p.true for p in pts], dtype=float)
    tp = np.cumsum(true)
    precision = tp / np.arange(1, len(pts) + 1)
    recall = tp / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    grid = np.arange(101) / 100
    idx = np.searchsorted(recall, grid, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(pts) - 1)], 0.0)
    return float(sampled.sum() / 101 * 100)


def _map(points: Mapping[int, list[_Point]], positives: Mapping[int, int]) -> float:
    """Mean AP over the classes with a detection or a ground truth."""
    classes = [c for c in set(points) | set(positives) if points.get(c) or positives.get(c, 0)]
    if not classes:
        return 0.0
    return float(np.mean([_ap(points.get(c, []), positives.get(c, 0)) for c in classes]))


def _iou(dets: np.ndarray, gts: np.ndarray, crowd: bool = False) -> np.ndarray:
    """pycocotools' IoU of XYWH boxes (crowd: intersection over the detection's area)."""
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    return np.asarray(
        mask_utils.iou(dets.tolist(), gts.tolist(), [crowd] * len(gts)), dtype=float
    ).reshape(len(dets), len(gts))


class _Run:
    """Matching, AP data and error classification over every image (TIDE's ``TIDERun``)."""

    def __init__(
        self,
        gt_by_image: Mapping[int, list[dict]],
        dets_by_image: Mapping[int, list[dict]],
        pos: float,
        bg: float,
        max_dets: int,
    ) -> None:
        self.pos, self.bg = pos, bg
        self.true_points: dict[int, list[_Point]] = defaultdict(list)
        self.points: dict[int, list[_Point]] = defaultdict(list)
        self.positives: dict[int, int] = defaultdict(int)
        self.errors: list[_Error] = []
        self.unmatched: dict[int, int] = defaultdict(int)  # per class, for FN
        self.best: dict[tuple[int, int], float] = {}  # gt key -> best loc/cls error score
        self.best_error: dict[tuple[int, int], int] = {}  # gt key -> index into errors
        self.detections = 0
        for image, anns in gt_by_image.items():
            dets = sorted(dets_by_image.get(image, []), key=lambda d: -d["score"])[:max_dets]
            self.detections += len(dets)
            self._image(image, [a for a in anns if not a["iscrowd"]], anns, dets)

    def _image(self, image: int, gts: list[dict], anns: list[dict], dets: list[dict]) -> None:
        crowd = [a for a in anns if a["iscrowd"]]
        gt_cls = np.array([g["category_id"] for g in gts], dtype=int)
        for c in gt_cls:
            self.positives[int(c)] += 1
        if not dets:
            for g in gts:
                self.unmatched[int(g["category_id"])] += 1
                self._miss(g)
            return
        det_box = np.array([d["bbox"] for d in dets], dtype=float)
        det_cls = np.array([d["category_id"] for d in dets], dtype=int)
        iou = _iou(det_box, np.array([g["bbox"] for g in gts], dtype=float).reshape(-1, 4))
        same = det_cls[:, None] == gt_cls[None, :]
        cls_iou = iou * same
        used = np.zeros(len(dets), dtype=object)  # True / False / None (ignored)
        used[:] = False
        gt_used = np.zeros(len(gts), dtype=bool)
        buffer = cls_iou.copy()
        for i in range(len(dets)):
            if len(gts) == 0:
                break
            j = int(np.argmax(buffer[i]))
            if buffer[i, j] >= self.pos:
                used[i], gt_used[j] = True, True
                buffer[:, j] = 0
        for region in crowd:
            region_iou = _iou(det_box, np.array([region["bbox"]], dtype=float), crowd=True)[:, 0]
            for i in range(len(dets)):
                if used[i] is False and region_iou[i] > self.pos:
                    if region["category_id"] in (det_cls[i], -1):
                        used[i] = None
        for i, d in enumerate(dets):
            c = int(det_cls[i])
            if used[i] is not None:
                point = _Point(float(d["score"]), bool(used[i]))
                self.points[c].append(point)
                if used[i]:
                    self.true_points[c].append(point)
                    continue
            self._classify(image, i, d, gts, iou, cls_iou, same, gt_used, used[i] is None)
        for j, g in enumerate(gts):
            if not gt_used[j]:
                self.unmatched[int(g["category_id"])] += 1
                if (image, j) not in self.best:
                    self._miss(g)

    def _classify(
        self,
        image: int,
        i: int,
        det: dict,
        gts: list[dict],
        iou: np.ndarray,
        cls_iou: np.ndarray,
        same: np.ndarray,
        gt_used: np.ndarray,
        ignored: bool,
    ) -> None:
        c, score = int(det["category_id"]), float(det["score"])
        original = None if ignored else _Point(score, False)
        det_size = size_of(det["bbox"])
        if len(gts) == 0:
            self.errors.append(_Error("bkg", det_size, c, original))
            return
        j = int(np.argmax(cls_iou[i]))
        if self.bg <= cls_iou[i, j] <= self.pos:
            self._fixable("loc", image, j, c, c, score, original, gts, gt_used)
            return
        other = iou[i] * ~same[i]
        j = int(np.argmax(other))
        if other[j] >= self.pos:
            g_cls = int(gts[j]["category_id"])
            self._fixable("cls", image, j, c, g_cls, score, original, gts, gt_used)
            return
        used_iou = cls_iou[i] * gt_used
        j = int(np.argmax(used_iou))
        if used_iou[j] >= self.pos:
            self.errors.append(_Error("dupe", det_size, c, original))
            return
        if iou[i].max() <= self.bg:
            self.errors.append(_Error("bkg", det_size, c, original))
            return
        self.errors.append(_Error("both", det_size, c, original))

    def _fixable(
        self,
        kind: str,
        image: int,
        j: int,
        cls: int,
        fixed_cls: int,
        score: float,
        original: _Point | None,
        gts: list[dict],
        gt_used: np.ndarray,
    ) -> None:
        """A loc or cls error: fixed into a true positive if its ground truth is unmatched and
        it is the highest-scoring such error of that ground truth (TIDE's ``BestGTMatch``)."""
        error = _Error(kind, size_of(gts[j]["bbox"]), cls, original, fixed_cls)
        if not gt_used[j]:
            key = (image, j)
            error.gt_key = key
            error.fixed = _Point(score, True)
            if self.best.get(key, -1.0) < score:
                self.best[key] = score
                self.best_error[key] = len(self.errors)
        self.errors.append(error)

    def _miss(self, gt: dict) -> None:
        self.errors.append(_Error("miss", size_of(gt["bbox"]), int(gt["category_id"]), None))

    def fixed_map(
        self, fix: Callable[[_Error], bool], positives: Mapping[int, int] | None = None
    ) -> float:
        """AP50 with every error for which ``fix`` is true fixed (TIDE's ``fix_errors``; the
        points in its order: the errors', then the true positives), with ``positives`` ground
        truths per class (default: as annotated)."""
        points: dict[int, list[_Point]] = defaultdict(list)
        positives = dict(self.positives if positives is None else positives)
        for n, e in enumerate(self.errors):
            if fix(e):
                if e.kind == "miss":
                    positives[e.cls] -= 1
                elif e.fixed is not None and self.best_error.get(e.gt_key) == n:
                    points[e.fixed_cls].append(e.fixed)
            elif e.original is not None:
                points[e.cls].append(e.original)
        for c in positives:
            points[c] += self.true_points.get(c, [])
        return _map(points, positives)


def tide(
    ground_truth: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    pos: float = 0.5,
    bg: float = 0.1,
    max_dets: int = 100,
) -> TideResult:
    """TIDE's breakdown of ``detections`` (COCO results: image_id, category_id, bbox XYWH,
    score) against ``ground_truth`` (a COCO annotation dict: images, annotations)."""
    gt_by_image: dict[int, list[dict]] = {int(im["id"]): [] for im in ground_truth["images"]}
    for a in ground_truth["annotations"]:
        gt_by_image.setdefault(int(a["image_id"]), []).append(
            {**a, "iscrowd": bool(a.get("iscrowd", 0))}
        )
    dets_by_image: dict[int, list[dict]] = defaultdict(list)
    for d in detections:
        dets_by_image[int(d["image_id"])].append(d)
    run = _Run(gt_by_image, dets_by_image, pos, bg, max_dets)
    ap = _map(run.points, run.positives)

    def delta(fix: Callable[[_Error], bool]) -> float:
        return max(run.fixed_map(fix) - ap, 0.0)

    deltas = {k: delta(lambda e, k=k: e.kind == k) for k in MAIN_ERRORS}
    by_size = {
        s: {k: delta(lambda e, k=k, s=s: e.kind == k and e.size == s) for k in MAIN_ERRORS}
        for s in SIZES
    }
    counts = {k: sum(e.kind == k for e in run.errors) for k in MAIN_ERRORS}
    counts_by_size = {
        s: {k: sum(e.kind == k and e.size == s for e in run.errors) for k in MAIN_ERRORS}
        for s in SIZES
    }
    # FP: every false positive below every true positive; FN: every unmatched GT removed
    ranked = {
        c: [_Point(1.0 if p.true else 0.0, p.true) for p in pts] for c, pts in run.points.items()
    }
    deltas["FP"] = _map(ranked, run.positives) - ap
    fewer = {c: n - run.unmatched.get(c, 0) for c, n in run.positives.items()}
    deltas["FN"] = run.fixed_map(lambda e: False, fewer) - ap
    return TideResult(
        ap,
        deltas,
        counts,
        by_size,
        counts_by_size,
        detections=run.detections,
        ground_truths=sum(run.positives.values()),
    )
