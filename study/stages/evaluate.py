"""``study evaluate``: COCO AP of a run's weights at eval.img_size and the test sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.data import eval_dataset
from study.eval.curve import learning_curve
from study.eval.sizes import evaluate_run
from study.models.weights import check_classes, load_weights
from study.resolved import evaluation_config
from study.runs import CURVE, run_paths, snapshot_files
from study.utils import pick_device, write_json


def evaluate(
    cfg: dict[str, Any],
    weights: str | None = None,
    split: str | None = None,
    out_dir: str | None = None,
    test_sizes: bool = False,
) -> dict[str, Any]:
    """COCO AP of the run's weights at eval.img_size (metrics.json, detections.json.gz); with
    ``test_sizes`` also at every eval.test_sizes (study/eval/sizes.py). It reads only the run's
    evaluation config (``configs/<experiment>/seed<k>/eval.yaml``). Everything is checked
    (sizes, weights, classes, output folder) before any inference.

    The run's own weights (no ``weights``, ``out_dir`` or ``split``) also get their learning
    curve (``curve.json``, study/eval/curve.py): every snapshot and the final weights on the
    first ``eval.curve_images`` validation images. It is scored first and written last, so a
    failure leaves the earlier files as they were."""
    ecfg = evaluation_config(cfg)
    device = pick_device(ecfg["eval"]["device"])
    out = Path(out_dir) if out_dir else run_paths(cfg).results
    weights_path = Path(weights) if weights else run_paths(cfg).model
    model, blob = load_weights(weights_path, device)
    dataset = eval_dataset(ecfg, split)
    check_classes(blob, weights_path, dataset)
    source = {"path": str(weights_path), "source": blob.get("source", "study train")}
    curve = []
    if weights is None and out_dir is None and split is None:
        curve = learning_curve(
            [*(p for _, p in snapshot_files(run_paths(cfg).snapshots)), weights_path],
            ecfg,
            eval_dataset,
            device,
            check=check_classes,
        )
    metrics = evaluate_run(
        model,
        ecfg,
        lambda c: eval_dataset(c, split),
        dataset,
        device,
        out,
        extra_meta={"weights": source},
        test_sizes=test_sizes,
    )
    if curve:
        write_json(out / CURVE, curve)
    return metrics
