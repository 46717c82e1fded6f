"""Datasets in the COCO layout, the synthetic benchmark, and the train/eval pipelines."""

from typing import Any

from study.data.check import (
    DataReport,
    Problem,
    check_annotations,
    check_dataset,
    check_images,
    format_report,
    run_data_check,
)
from study.data.coco import CocoDetection, annotation_file, coco_api, load_coco, load_rgb
from study.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    MixupDataset,
    TrainTransform,
    boxes_to_original,
    build_eval_transforms,
    build_train_transforms,
    collate,
)

_SYNTHETIC = {
    "SYNTHETIC_CLASSES": "CLASS_NAMES",
    "generate_synthetic": "generate",
    "size_bucket": "size_bucket",
}


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m study.data.synthetic` runs without a double import.
    if name in _SYNTHETIC:
        from study.data import synthetic

        return getattr(synthetic, _SYNTHETIC[name])
    raise AttributeError(f"module 'study.data' has no attribute {name!r}")


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYNTHETIC_CLASSES",
    "CocoDetection",
    "DataReport",
    "EvalTransform",
    "MixupDataset",
    "Problem",
    "TrainTransform",
    "annotation_file",
    "boxes_to_original",
    "build_eval_transforms",
    "build_train_transforms",
    "check_annotations",
    "check_dataset",
    "check_images",
    "coco_api",
    "collate",
    "format_report",
    "generate_synthetic",
    "load_coco",
    "load_rgb",
    "run_data_check",
    "size_bucket",
]
