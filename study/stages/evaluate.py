"""``study evaluate``: COCO AP of a run's weights at eval.img_size and the test sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from study.data import eval_dataset
from study.errors import CheckpointError
from study.eval.curve import learning_curve
from study.eval.sizes import evaluate_run
from study.models.weights import check_classes, load_weights
from study.resolved import evaluation_config
from study.runs import CURVE, run_paths, snapshot_files
from study.utils import pick_device


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
    first ``eval.curve_images`` validation images, written and renamed in with the metrics
    (study/eval/sizes.py), so a failure (a full disk included) leaves the earlier files as
    they were."""
    ecfg = evaluation_config(cfg)
    device = pick_device(ecfg["eval"]["device"])
    out = Path(out_dir) if out_dir else run_paths(cfg).results
    weights_path = Path(weights) if weights else run_paths(cfg).model
    model, blob = load_weights(weights_path, device)
    refuse_non_finite(model, weights_path)
    dataset = eval_dataset(ecfg, split)
    dataset.check_scorable(str(ecfg["eval"].get("dropped_gt", "error")))
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
    return evaluate_run(
        model,
        ecfg,
        lambda c: eval_dataset(c, split),
        dataset,
        device,
        out,
        extra_meta={"weights": source},
        test_sizes=test_sizes,
        extra_files={CURVE: curve} if curve else None,
    )


def refuse_non_finite(model: nn.Module, path: Path) -> None:
    """Weights with a NaN or an infinite value would score AP 0 with only a warning and replace
    the run's metrics: refused before any inference, naming the first such tensor."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: {name} has {bad} non-finite value(s) (NaN or inf): the training "
                "diverged or the file is damaged; nothing was evaluated or written (retrain the "
                "run with `study train <experiment> --seed K --force`)"
            )
