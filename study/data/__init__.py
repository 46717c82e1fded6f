"""Datasets in the COCO layout and the train/eval pipelines. The built-in benchmark
(``study.data.synthetic``) is imported on its own: training reads its files, not its code."""

from study.data.check import (
    DataReport,
    Problem,
    check_annotations,
    check_dataset,
    check_images,
    format_report,
    run_data_check,
)
from study.data.coco import (
    CocoDetection,
    annotation_file,
    coco_api,
    eval_dataset,
    load_coco,
    load_rgb,
)
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

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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
    "eval_dataset",
    "format_report",
    "load_coco",
    "load_rgb",
    "run_data_check",
]
