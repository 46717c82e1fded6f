"""``study verify``: re-score every committed detections file and compare with its metrics file.

Each ``results/<experiment>/seed<k>/metrics.json`` (and ``test_sizes/s<size>.json``) records the
annotation file it was scored on (path and SHA-256), the scored images (``data.max_images``), the
handling of dropped ground truth (``eval.dropped_gt``) and the COCO backend. The detections behind
it (``detections.json.gz``, rounded before scoring) are committed beside it. This module loads
them, scores them with plain pycocotools ``COCOeval`` and compares every metric with the committed
value: exactly (``==``) for metrics scored by pycocotools, within 1e-12 for faster-coco-eval
(which sums in another order). Nothing is trained or inferred, so a fresh clone can re-check every
number in seconds per file once the dataset is there (``dvc repro data`` for the built-in one).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.data import CocoDetection
from study.errors import StudyError
from study.eval.coco_eval import (
    DETECTIONS,
    STAT_INDEX,
    backend_version,
    coco_metrics,
    read_detections,
    scored_ground_truth,
)

FASTER_TOLERANCE = 1e-12


def metrics_files(results: Path, runs: Sequence[str] = ()) -> list[Path]:
    """Every metrics file under ``results`` (main and test sizes), optionally only those of
    ``runs`` (``fusion/asff`` or ``fusion/asff/seed0``)."""
    files = sorted(results.glob("**/seed*/metrics.json"))
    files += sorted(results.glob("**/seed*/test_sizes/s*.json"))
    if runs:
        wanted = [(results / r).as_posix().rstrip("/") + "/" for r in runs]
        files = [f for f in files if any(f.as_posix().startswith(w) for w in wanted)]
    return sorted(files)


def detections_of(metrics_path: Path, meta: dict[str, Any]) -> Path:
    """The detections file a metrics file was scored from: named in its meta, or, for a file
    written before the detections were committed with it, the plain ``detections.json`` beside
    it (the layout of that time) when there is one."""
    if meta.get("detections"):
        return metrics_path.parent / str(meta["detections"])
    legacy = metrics_path.parent / "detections.json"
    return legacy if legacy.is_file() else metrics_path.parent / DETECTIONS


class _GroundTruth:
    """Annotation files and their scored ground truth, loaded once per (file, subset, mode)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[Any, list[int]]] = {}

    def get(self, meta: dict[str, Any], where: Path) -> tuple[Any, list[int]]:

        ds = meta.get("dataset") or {}
        cfg = meta.get("config") or {}
        max_images = (cfg.get("data") or {}).get("max_images")
        mode = str((meta.get("protocol") or {}).get("dropped_gt") or "score")
        key = (ds.get("root"), ds.get("split"), max_images, mode)
        if key not in self._cache:
            if not ds.get("root") or not ds.get("split"):
                raise StudyError(
                    f"{where}: meta.dataset has no root/split (not a study metrics file)"
                )
            ann_file = Path(ds.get("ann_file") or "")
            if not ann_file.is_file():
                raise StudyError(
                    f"{where}: its annotation file {ann_file} is missing; get the dataset first "
                    "(`dvc repro data` regenerates the built-in one, `dvc pull` fetches a "
                    "tracked one)"
                )
            sha = hashlib.sha256(ann_file.read_bytes()).hexdigest()[
                : len(ds.get("ann_file_sha256") or "")
            ]
            if ds.get("ann_file_sha256") and sha != ds["ann_file_sha256"]:
                raise StudyError(
                    f"{where}: {ann_file} is not the annotation file it was scored on (SHA-256 "
                    f"{sha}..., recorded {ds['ann_file_sha256']}...)"
                )
            dataset = CocoDetection(ds["root"], ds["split"], max_images=max_images)
            coco_gt, _ = scored_ground_truth(
                dataset.coco, dataset.dropped_ann_ids, mode, dataset.ann_file
            )
            self._cache[key] = (coco_gt, list(dataset.ids))
        return self._cache[key]


def _same(committed: Any, rescored: Any, tolerance: float) -> bool:
    if committed is None or rescored is None:
        return committed is None and rescored is None
    if tolerance == 0.0:
        return committed == rescored
    return math.isclose(committed, rescored, rel_tol=0.0, abs_tol=tolerance)


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify_file` found for one metrics file."""

    ok: bool  # every metric re-scored identically
    line: str  # the report line
    git_revision: str | None = None  # the revision recorded in the file's meta, when it has one


def verify_file(path: Path, ground_truth: _GroundTruth) -> Verdict:
    """Re-score one metrics file (read once) from its detections."""
    try:
        data = json.loads(path.read_text())
        meta = data["meta"]
        revision = meta.get("git_revision")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return Verdict(False, f"FAIL  {path}: not a readable study metrics file ({exc})")
    ok, line = _rescore(path, data, meta, ground_truth)
    return Verdict(ok, line, None if revision is None else str(revision))


def _rescore(
    path: Path, data: dict[str, Any], meta: dict[str, Any], ground_truth: _GroundTruth
) -> tuple[bool, str]:
    """(identical?, report line) of the metrics ``data`` of ``path``."""
    dets_path = detections_of(path, meta)
    if not dets_path.is_file():
        return False, f"FAIL  {path}: its detections {dets_path} are missing"
    coco_gt, image_ids = ground_truth.get(meta, path)
    num_images = (meta.get("dataset") or {}).get("num_images")
    if num_images is not None and num_images != len(image_ids):
        return (
            False,
            f"FAIL  {path}: scored {num_images} images, the dataset gives {len(image_ids)}",
        )
    rescored = coco_metrics(coco_gt, read_detections(dets_path), image_ids, "pycocotools")
    faster = str(meta.get("coco_backend", "")).startswith("faster-coco-eval")
    tolerance = FASTER_TOLERANCE if faster else 0.0
    keys = [k for k in STAT_INDEX if k in data]
    diffs = [k for k in keys if not _same(data[k], rescored[k], tolerance)]
    if diffs:
        shown = "; ".join(f"{k} committed {data[k]!r}, re-scored {rescored[k]!r}" for k in diffs)
        return False, f"FAIL  {path}: {shown}"
    how = f"within {tolerance:g} (scored by {meta['coco_backend']})" if faster else "exactly"
    ap = data.get("AP")
    return True, f"ok    {path}: {len(keys)} metrics equal {how} (AP {ap:.4f})"


_WORKER_GROUND_TRUTH: _GroundTruth | None = None


def _verify_in_worker(path: Path) -> Verdict:
    """:func:`verify_file` in a worker process, with that process's own ground-truth cache."""
    global _WORKER_GROUND_TRUTH
    _WORKER_GROUND_TRUTH = _WORKER_GROUND_TRUTH or _GroundTruth()
    return verify_file(path, _WORKER_GROUND_TRUTH)


def verify(results: Path, runs: Sequence[str] = (), workers: int | None = None) -> tuple[str, bool]:
    """Re-score every metrics file under ``results``; (report text, all identical?). The files
    are scored in ``workers`` processes (default: one per core, at most one per file); the
    report lists them in order whatever the number of workers."""
    files = metrics_files(results, runs)
    if not files:
        where = f" for {', '.join(runs)}" if runs else ""
        raise StudyError(f"{results}: no metrics files{where} (run `dvc repro` or `dvc pull`)")
    workers = min(workers or os.cpu_count() or 1, len(files))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            verdicts = list(pool.map(_verify_in_worker, files))
    else:
        ground_truth = _GroundTruth()
        verdicts = [verify_file(path, ground_truth) for path in files]
    lines = [v.line for v in verdicts]
    ok = sum(v.ok for v in verdicts)
    dirty = sorted({v.git_revision for v in verdicts if (v.git_revision or "").endswith("-dirty")})
    verdict = "all identical" if ok == len(files) else "DIFFERENCES"
    lines.append(
        f"{ok} of {len(files)} metrics files re-scored from their committed detections with "
        f"{backend_version('pycocotools')}: {verdict}"
    )
    if dirty:
        lines.append(f"warning: results made by uncommitted code: {', '.join(dirty)}")
    return "\n".join(lines), ok == len(files)
