"""Evaluation: post-processing, COCO AP (pycocotools or faster-coco-eval), evaluation at several
test sizes (``sizes``) and the latency benchmark (``bench``)."""

from study.eval.coco_eval import (
    METRIC_KEYS,
    coco_metrics,
    evaluate,
    run_inference,
    write_detections,
    write_metrics,
)
from study.eval.postprocess import postprocess, to_original

__all__ = [
    "METRIC_KEYS",
    "coco_metrics",
    "evaluate",
    "postprocess",
    "run_inference",
    "to_original",
    "write_detections",
    "write_metrics",
]
