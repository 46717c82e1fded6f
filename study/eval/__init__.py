"""Evaluation: post-processing, COCO AP (pycocotools) and inference speed."""

from study.eval.coco_eval import (
    METRIC_KEYS,
    coco_metrics,
    evaluate,
    run_inference,
    write_detections,
    write_metrics,
)
from study.eval.postprocess import postprocess, to_original
from study.eval.speed import measure_speed

__all__ = [
    "METRIC_KEYS",
    "coco_metrics",
    "evaluate",
    "measure_speed",
    "postprocess",
    "run_inference",
    "to_original",
    "write_detections",
    "write_metrics",
]
