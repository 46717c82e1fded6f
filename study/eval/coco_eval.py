"""COCO box AP of a detector on a COCO-layout dataset, with the provenance of the number.

The protocol is the official one (``utils/cocoapi_evaluator.py``): decode, score = objectness x
class probability, confidence 0.001, class-wise NMS 0.65, boxes mapped back to the original
image, COCO json results, pycocotools ``COCOeval`` (bbox; ``eval.backend: faster-coco-eval``
scores the same way, faster). Every box that survives NMS is submitted, as the official evaluator
does (``eval.max_dets: N`` keeps only the best N per image; COCOeval keeps the best 100 per image
*and category*, so a per-image cap lowers AP). Differences, harmless to AP: batches instead of
batch 1, and when the dataset is a subset (``max_images``) only its images are scored (the
official code always scored the whole annotation file).

The detections are rounded as COCO results files usually are (box 2 decimals, score 5) *before*
scoring, and written as ``detections.json.gz``: re-scoring that file (``study verify``) gives the
metrics exactly. Ground-truth boxes the data loader drops (non-positive size, outside the image)
are handled by ``eval.dropped_gt`` (:func:`scored_ground_truth`).

Metric values are COCOeval's fractions (0..1). COCOeval reports -1 for a size bucket with no
ground truth (e.g. no small objects in a tiny subset); that becomes ``None`` (JSON null), meaning
"no ground truth of that size", not zero.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from study.data import collate
from study.data.coco import refuse_dropped_gt
from study.errors import ConfigError, DataError, StudyError
from study.eval.postprocess import nms_settings, postprocess, to_original
from study.provenance import provenance
from study.utils import atomic_path, write_json

log = logging.getLogger(__name__)

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Index of each metric in COCOeval.stats (summarize(): 0-5 AP, 6-8 AR@1/10/100, 9-11 AR s/m/l).
STAT_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "ARmax100": 8}


def autocast_context(device: torch.device, amp: Any = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` in auto | bf16 | fp16 | off (None / False = off)."""
    mode = "off" if amp is None or amp is False else str(amp).lower()
    if mode in ("auto", "true"):
        mode = "bf16" if device.type == "cuda" else "off"
    if mode in ("off", "false", "none"):
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if mode not in dtypes:
        raise ConfigError(f"amp: expected auto | bf16 | fp16 | off, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=dtypes[mode])


def decoder_of(model: nn.Module) -> nn.Module:
    """The module that has ``decode`` (unwraps DistributedDataParallel)."""
    return model if hasattr(model, "decode") else model.module


def _default_collate() -> Callable[..., Any]:

    return collate


def _infer(
    model: nn.Module,
    dataset: Dataset,
    cfg_eval: Mapping[str, Any],
    device: torch.device,
    workers: int = 0,
    amp: Any = None,
    collate_fn: Callable[..., Any] | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Detections in COCO json form and the ids of every image seen."""
    loader = DataLoader(
        dataset,
        batch_size=int(cfg_eval["batch_size"]),
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn or _default_collate(),
        pin_memory=device.type == "cuda",
    )
    label_to_cat_id = dataset.label_to_cat_id
    results: list[dict[str, Any]] = []
    image_ids: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for images, targets in tqdm(loader, desc="eval", unit="batch", disable=None):
                images = images.to(device, non_blocking=True)
                with autocast_context(device, amp):
                    pred = decoder_of(model).decode(model(images))  # (B, N, 5 + C)
                dets = postprocess(pred, **nms_settings(cfg_eval))
                for det, target in zip(dets, targets, strict=True):
                    info = target["info"]
                    image_id = int(info.get("image_id", target.get("image_id")))
                    image_ids.append(image_id)
                    results.extend(_to_coco(det, info, image_id, label_to_cat_id))
    finally:
        model.train(was_training)
    return results, image_ids


def _to_coco(
    det: Mapping[str, torch.Tensor], info: Mapping[str, Any], image_id: int, label_to_cat_id: Any
) -> list[dict[str, Any]]:
    """One image's detections as COCO result dicts (bbox x, y, w, h in original pixels)."""
    boxes = to_original(det["boxes"].cpu(), info)
    boxes[:, 2:] -= boxes[:, :2]
    return [
        {
            "image_id": image_id,
            "category_id": int(label_to_cat_id[label]),
            "bbox": [round(v, 2) for v in box],
            "score": round(score, 5),
        }
        for box, score, label in zip(
            boxes.tolist(), det["scores"].cpu().tolist(), det["labels"].cpu().tolist(), strict=True
        )
    ]


def run_inference(
    model: nn.Module,
    dataset: Dataset,
    cfg_eval: Mapping[str, Any],
    device: torch.device | str,
    workers: int = 0,
    amp: Any = None,
    collate_fn: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    """COCO result dicts (image_id, category_id, bbox xywh in original pixels, score).

    ``cfg_eval`` is the ``eval:`` section of the config (batch_size, conf_thresh, nms_thresh,
    max_dets). ``model`` must already be on ``device``. ``amp`` (auto | bf16 | fp16 | off) is off
    by default: AP is measured in float32. ``collate_fn`` defaults to ``study.data.collate``.
    """
    return _infer(model, dataset, cfg_eval, torch.device(device), workers, amp, collate_fn)[0]


def _empty_dataset(coco_gt: COCO) -> dict[str, Any]:
    """The dataset dict of a results object with no detections: the ground truth's images and
    categories, no annotations."""
    return {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }


def _empty_results(coco_gt: COCO) -> COCO:
    """A results object with no detections (``COCO.loadRes`` fails on an empty list)."""
    dt = COCO()
    dt.dataset = _empty_dataset(coco_gt)
    dt.createIndex()
    return dt


def load_results(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """COCO result dicts as a pycocotools results object (an empty one for no detections)."""
    if not results:
        return _empty_results(coco_gt)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes([dict(r) for r in results])
    except AssertionError as exc:
        raise StudyError(f"detections do not match the annotation file: {exc}") from None


def _stat(value: float) -> float | None:
    """COCOeval's -1 (no ground truth in that bucket) -> None; anything else a float."""
    return None if value < 0 else float(value)


def backend_version(backend: str) -> str:
    """``backend`` and the installed version, e.g. ``pycocotools 2.0.8``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{backend} {version(backend)}"
    except PackageNotFoundError:
        return f"{backend} (version unknown)"


def _evaluator(coco_gt: COCO, results: list[dict[str, Any]], backend: str) -> Any:
    """A bbox COCOeval object of ``backend`` over ``results`` (not yet evaluated)."""
    if backend == "pycocotools":
        return COCOeval(coco_gt, load_results(coco_gt, results), "bbox")
    if backend != "faster-coco-eval":
        raise ConfigError(f"eval.backend: expected pycocotools | faster-coco-eval, got {backend!r}")
    try:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        raise ConfigError(
            "eval.backend: faster-coco-eval is not installed (pip install faster-coco-eval, "
            "or pip install 'asff-study[fast-eval]')"
        ) from None
    gt = FasterCOCO()
    gt.dataset = coco_gt.dataset
    gt.createIndex()
    if results:
        try:
            dt = gt.loadRes([dict(r) for r in results])
        except AssertionError as exc:
            raise StudyError(f"detections do not match the annotation file: {exc}") from None
    else:
        dt = FasterCOCO()
        dt.dataset = _empty_dataset(coco_gt)
        dt.createIndex()
    return COCOeval_faster(gt, dt, "bbox", print_function=print)


def coco_metrics(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    img_ids: list[int] | None = None,
    backend: str = "pycocotools",
) -> dict[str, Any]:
    """COCOeval (bbox) of ``results``: AP, AP50, AP75, APs, APm, APl, ARmax100 and ``summary``.

    Values are fractions (0..1), or None where COCOeval has no ground truth to score (an empty
    size bucket). ``img_ids`` restricts scoring to those images (a subset run). No detections at
    all gives 0.0 (None for empty buckets) with a warning. ``summary`` holds COCOeval's printout.
    ``backend`` is pycocotools (the reference) or faster-coco-eval (the same protocol in C++;
    tests/eval/test_eval_backend.py checks that every metric is identical).
    """
    if not results:
        msg = "no detections at all: every metric is 0 (the model found nothing above the "
        warnings.warn(msg + "confidence threshold)", RuntimeWarning, stacklevel=2)
        log.warning(msg + "confidence threshold)")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev = _evaluator(coco_gt, results, backend)
        if img_ids is not None:
            ev.params.imgIds = sorted(set(img_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics: dict[str, Any] = {key: _stat(ev.stats[i]) for key, i in STAT_INDEX.items()}
    metrics["summary"] = buf.getvalue()
    return metrics


def _dataset_meta(dataset: Dataset, cfg: Mapping[str, Any]) -> dict[str, Any]:
    data_cfg = cfg.get("data", {})
    root = str(getattr(dataset, "root", data_cfg.get("root")))
    split = str(getattr(dataset, "split", data_cfg.get("val_split")))
    ann_file = Path(
        getattr(dataset, "ann_file", Path(root) / "annotations" / f"instances_{split}.json")
    )
    sha = None
    if ann_file.is_file():
        sha = hashlib.sha256(ann_file.read_bytes()).hexdigest()[:16]
    return {
        "root": root,
        "split": split,
        "ann_file": str(ann_file),
        "ann_file_sha256": sha,
        "num_images": len(dataset),
    }  # type: ignore[arg-type]


def load_coco_gt(dataset: Dataset, cfg: Mapping[str, Any] | None = None) -> COCO:
    """The dataset's pycocotools ``COCO`` (``dataset.coco``), else its annotation file read."""
    coco = getattr(dataset, "coco", None)
    if isinstance(coco, COCO):
        return coco
    ann_file = Path(_dataset_meta(dataset, cfg or {})["ann_file"])
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: annotation file not found")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def build_meta(
    cfg: Mapping[str, Any],
    dataset: Dataset,
    device: torch.device,
    num_detections: int,
    eval_seconds: float,
) -> dict[str, Any]:
    """What made a metrics file: config, provenance, dataset, device, protocol, timing."""
    ev = cfg["eval"]
    prov = provenance(dict(cfg), device)
    return {
        "config": copy.deepcopy(dict(cfg)),
        "git_revision": prov["git_revision"],
        "provenance": prov,
        "dataset": _dataset_meta(dataset, cfg),
        "device": prov["device"],
        "profile": cfg.get("profile"),
        "protocol": {
            k: ev.get(k)
            for k in ("img_size", "protocol", "conf_thresh", "nms_thresh", "max_dets", "dropped_gt")
        },
        "num_detections": num_detections,
        "eval_seconds": round(eval_seconds, 3),
        "torch": torch.__version__,
    }


def write_metrics(path: str | Path, metrics: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` atomically: the metric keys at the top level, plus ``meta``."""
    write_json(path, {**{k: v for k, v in metrics.items() if k != "summary"}, "meta": dict(meta)})


DETECTIONS = "detections.json.gz"


def write_detections(path: str | Path, results: list[dict[str, Any]]) -> None:
    """Write the COCO result dicts gzip-compressed (``detections.json.gz``), atomically and
    byte-reproducibly (no time stamp in the gzip header)."""
    text = json.dumps(results, separators=(",", ":")).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(text)


def read_detections(path: str | Path) -> list[dict[str, Any]]:
    """The COCO result dicts of a ``detections.json.gz`` (or plain ``.json``) file."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: detections file not found")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyError(f"{path}: cannot read detections ({exc})") from None
    if not isinstance(data, list):
        raise StudyError(f"{path}: expected a list of COCO detections")
    return data


def scored_ground_truth(
    coco_gt: COCO, dropped_ids: Sequence[int], mode: str, ann_file: Any
) -> tuple[COCO, dict[str, Any]]:
    """The ground truth COCOeval scores, and a record of which annotations that is.

    ``dropped_ids`` are the non-crowd annotations the data loader drops (non-positive size, or
    outside the image): a detector is never trained on them. ``mode`` (``eval.dropped_gt``):
    ``error`` refuses to score (a perfect detector would lose AP to them); ``score`` keeps them
    as ground truth (pycocotools on the raw file, the official evaluator); ``ignore`` marks them
    as crowd regions, which COCOeval neither counts as missed nor as matched.
    """
    refuse_dropped_gt(dropped_ids, mode, ann_file)
    anns = coco_gt.dataset.get("annotations", [])
    record = {
        "annotations": len(anns),
        "crowd": sum(1 for a in anns if a.get("iscrowd", 0)),
        "dropped_at_load": len(dropped_ids),
        "dropped_gt": mode,
    }
    if dropped_ids and mode == "ignore":
        drop = set(dropped_ids)
        dataset = dict(coco_gt.dataset)
        dataset["annotations"] = [{**a, "iscrowd": 1} if a.get("id") in drop else a for a in anns]
        coco_gt = COCO()
        coco_gt.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt.createIndex()
    ignored = len(dropped_ids) if mode == "ignore" else 0
    record["scored"] = record["annotations"] - record["crowd"] - ignored
    return coco_gt, record


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    cfg: Mapping[str, Any],
    device: torch.device | str,
    out_dir: str | Path | None = None,
    collate_fn: Callable[..., Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the COCO protocol; return the metrics plus ``meta`` (with ``extra_meta`` merged in).

    ``model`` must already be on ``device``. With ``out_dir`` (normally ``results/<variant>``)
    also writes ``metrics.json`` and ``detections.json.gz`` there. ``collate_fn`` defaults to
    ``study.data.collate``; ``cfg["eval"]["amp"]``, if set, turns on autocast.
    """
    device = torch.device(device)
    cfg_eval = cfg["eval"]
    start = time.perf_counter()
    results, image_ids = _infer(
        model,
        dataset,
        cfg_eval,
        device,
        workers=int(cfg.get("data", {}).get("workers", 0) or 0),
        amp=cfg_eval.get("amp"),
        collate_fn=collate_fn,
    )
    backend = str(cfg_eval.get("backend", "pycocotools"))
    coco_gt, gt_record = scored_ground_truth(
        load_coco_gt(dataset, cfg),
        getattr(dataset, "dropped_ann_ids", []),
        str(cfg_eval.get("dropped_gt", "error")),
        getattr(dataset, "ann_file", "the annotation file"),
    )
    metrics = coco_metrics(coco_gt, results, image_ids, backend)
    summary = metrics.pop("summary")
    log.info("COCOeval:\n%s", summary)
    meta = build_meta(cfg, dataset, device, len(results), time.perf_counter() - start)
    meta["coco_summary"] = summary
    meta["coco_backend"] = backend_version(backend)
    meta["ground_truth"] = gt_record
    meta["detections"] = DETECTIONS
    meta.update(extra_meta or {})
    if out_dir is not None:
        write_detections(Path(out_dir) / DETECTIONS, results)
        write_metrics(Path(out_dir) / "metrics.json", metrics, meta)
    return {**metrics, "meta": meta}
