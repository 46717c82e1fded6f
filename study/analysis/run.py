"""``study analyze``: one trained run's gradient consistency, weight agreement and weight maps,
at each of its snapshots (``train.snapshots``) and its final weights.

Writes ``results/<experiment>/seed<k>/analysis/``:
    gradients.csv      per checkpoint, gradient mode, level and size bucket: the own and cross-level
                       gradient norms, cosine, negative-cosine share and conflict share
    gradient_bins.csv  the same measures per level against the weight the other levels give
                       (final weights)
    agreement.csv      claim C6: does the largest weight pick the object's assigned level?
    maps.npz           images, boxes, weight maps and fused activations for the figures
    summary.json       settings, checkpoints, definitions and provenance
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from study.analysis.gradients import (
    BIN_MEASURES,
    BUCKETS,
    GRADIENT_MODES,
    MARGIN,
    ConflictSamples,
    agreement,
    assigned_labels,
    binned_by_weight,
    box_areas,
    conflict_at_positives,
    level_gradients,
    object_areas,
    object_levels,
    size_bucket,
    summarize,
    target_boxes,
)
from study.data import IMAGENET_MEAN, IMAGENET_STD, collate, eval_dataset
from study.engine.loss import build_criterion
from study.errors import ConfigError, StudyError
from study.models.weights import check_classes, load_weights
from study.provenance import provenance
from study.runs import snapshot_files
from study.utils import atomic_path, write_json

if TYPE_CHECKING:
    from study.runs import RunPaths

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "images": None,  # validation images analysed (null = the whole split)
    "batch_size": 16,
    "map_images": 4,  # images drawn as weight maps (nested, small, medium, large objects)
    "fractions": [0.0, 0.5],  # snapshots analysed (fractions of the run); the final weights always
}
DEFINITIONS = {
    "locations": "fixed by the ground truth alone, the same at every checkpoint and for every "
    "strategy: cells of x^k where an object is assigned at level k (its best predefined anchor's "
    f"level, its centre's cell) and no object is assigned at another level within {MARGIN} cell "
    "(on that level's grid)",
    "own_norm": "|dL^k/dx^k| at the location (channel norm), divided by the batch's loss per "
    "image (sum over levels), so that checkpoints with different losses compare",
    "cross_norm": "|sum_{j!=k} dL^j/dx^k|, scaled the same way: what the other levels' losses "
    "send to the location (the term the paper argues ASFF's weights can switch off)",
    "share": "cross / (own + cross) norms: a ratio to the level's own gradient, so it also "
    "rises when that gradient shrinks",
    "cosine": "cos(dL^k/dx^k, sum_{j!=k} dL^j/dx^k) at the same locations",
    "negative_cosine": "share of the locations with a negative cosine (PCGrad's definition of "
    "conflicting gradients; 0.5 when the directions are unrelated)",
    "w_others": "mean weight the other output levels give to input level k at the location",
    "w_own": "weight output level k gives to its own input level at the location",
    "gradient modes": "full: the real gradient; detached: the fusion weights treated as "
    "constants (the paper's section 3.3 argument ignores the gradient through them)",
    "mode": "training-mode BatchNorm (batch statistics over each analysis batch) for the "
    "gradients, as training computes them; eval mode for the agreement (C6) and the weight maps, "
    "as inference computes the weights",
    "agreement": "per object, at its centre cell on its assigned level (as the locations): does "
    "the largest of that output level's weights fall on its own input level",
    "nonfinite": "locations whose share is not finite (a non-finite gradient), left out",
}


def check_settings(settings: dict[str, Any], source: str) -> dict[str, Any]:
    """``analysis`` params merged over the defaults; ConfigError naming ``source`` otherwise."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{source}: analysis: unknown key(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}"
        )
    out = {**DEFAULTS, **settings}
    fractions = out["fractions"]
    if not isinstance(fractions, list) or not all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f < 1 for f in fractions
    ):
        raise ConfigError(
            f"{source}: analysis.fractions must be a list of fractions in [0, 1), got {fractions!r}"
        )
    for key, minimum in (("images", 1), ("batch_size", 1), ("map_images", 0)):
        value = out[key]
        if value is None and key == "images":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(
                f"{source}: analysis.{key} must be an integer >= {minimum}, got {value!r}"
            )
    return out


def checkpoints(
    paths: RunPaths, fractions: list[float] | None = None
) -> list[tuple[str, float, Path]]:
    """(label, fraction of the run, weights file): the snapshots at ``fractions`` (all when
    None) in training order, labelled ``init`` or by their share of the run (``50%``), then
    the final weights."""
    out = []
    for fraction, p in snapshot_files(paths.snapshots):
        if fractions is None or any(abs(fraction - f) < 1e-4 for f in fractions):
            out.append(("init" if fraction == 0 else f"{100 * fraction:g}%", fraction, p))
    if not paths.model.is_file():
        raise StudyError(f"{paths.model}: weights file not found (train the experiment first)")
    out.append(("final", 1.0, paths.model))
    return out


MAP_KINDS = ("nested", *BUCKETS)  # what the weight-map images show, in this order


def _has_nested(boxes: torch.Tensor) -> bool:
    if len(boxes) < 2:
        return False
    inside = (
        (boxes[:, None, 0] >= boxes[None, :, 0])
        & (boxes[:, None, 1] >= boxes[None, :, 1])
        & (boxes[:, None, 2] <= boxes[None, :, 2])
        & (boxes[:, None, 3] <= boxes[None, :, 3])
    )
    inside.fill_diagonal_(False)
    return bool(inside.any())


def image_kinds(target: dict) -> set[str]:
    """The kinds of :data:`MAP_KINDS` an image shows: ``nested`` (a box inside another) and the
    size bucket of each of its objects."""
    kinds = {BUCKETS[b] for b in size_bucket(box_areas(target)).tolist()}
    if _has_nested(target_boxes(target)):
        kinds.add("nested")
    return kinds


def choose_map_images(dataset, count: int) -> list[int]:  # noqa: ANN001
    """The first image with nested objects, then with a small, a medium and a large object
    (in the dataset's order, each image once), then the first remaining images. Each image is
    read at most once, when a kind first needs it."""
    kinds_of = cache(lambda i: image_kinds(dataset[i][1]))
    chosen: list[int] = []
    for kind in MAP_KINDS[:count]:
        hit = (i for i in range(len(dataset)) if i not in chosen and kind in kinds_of(i))
        first = next(hit, None)
        if first is not None:
            chosen.append(first)
    chosen += [i for i in range(len(dataset)) if i not in chosen][: count - len(chosen)]
    return chosen


def analyze_checkpoint(
    model: torch.nn.Module,
    criterion,  # noqa: ANN001
    loader: DataLoader,
    device: torch.device,
    label: str,
) -> dict[str, dict[str, np.ndarray]]:
    """Conflict samples per gradient mode over the loader."""
    samples = {mode: ConflictSamples() for mode in GRADIENT_MODES}
    # BatchNorm with batch statistics, as training computes the gradient: the initial weights'
    # running statistics are unset (eval mode would measure an exploding network).
    model.train()
    for images, targets in tqdm(loader, desc=f"analyze {label}", leave=False, dynamic_ncols=True):
        images = images.to(device)
        areas = object_areas(targets, device)
        plain = [
            {"boxes": target_boxes(t, device), "labels": t["labels"].to(device)} for t in targets
        ]
        with torch.no_grad():
            feats = model.features(images)
        size = tuple(images.shape[-2:])
        grids = [tuple(f.shape[-2:]) for f in feats]
        labels = assigned_labels(criterion, plain, areas, grids, model.strides)
        p = level_gradients(model, criterion, feats, plain, size)
        conflict_at_positives(p, labels, samples["full"])
        if p.weights is None:
            # No weights to detach: the detached gradient is the full one (not recomputed).
            samples["detached"] = samples["full"]
            continue
        p = level_gradients(model, criterion, feats, plain, size, detach=True)
        conflict_at_positives(p, labels, samples["detached"])
    return {m: s.arrays() for m, s in samples.items()}


def agreement_records(
    model: torch.nn.Module,
    criterion,  # noqa: ANN001
    loader: DataLoader,
    device: torch.device,
) -> list:
    """Claim C6's records over the loader, with the model in eval mode (the weights inference
    computes); empty for a fusion without weights."""
    model.eval()
    records: list = []
    for images, targets in loader:
        with torch.no_grad():
            _, weights = model.fuse(model.features(images.to(device)))
        if weights is None:
            return []
        areas = object_areas(targets, device)
        boxes = [target_boxes(t, device) for t in targets]
        levels = object_levels(criterion, torch.cat(boxes))  # a batch has at least one image
        records += agreement(levels, weights, targets, areas, model.strides)
    return records


def agreement_rows(label: str, frac: float, records: list) -> list[dict[str, Any]]:
    rows = []
    for b, name in [(None, "all"), *enumerate(BUCKETS)]:
        sel = [r for r in records if b is None or r[1] == b]
        if not sel:
            continue
        agree = sum(1 for k, _, top, _ in sel if top == k)
        own = float(np.mean([vec[k] for k, _, _, vec in sel]))
        rows.append(
            {
                "checkpoint": label,
                "fraction": frac,
                "bucket": name,
                "objects": len(sel),
                "agree": agree,
                "rate": agree / len(sel),
                "chance": 1 / 3,
                "w_assigned_mean": own,
            }
        )
    return rows


def weight_maps(model: torch.nn.Module, dataset, indices: list[int], device) -> dict:  # noqa: ANN001
    """Arrays for the figures: image (uint8), boxes, labels, per output level the weights
    (3, H, W) when the fusion has them and the fused map's mean activation (H, W)."""
    arrays: dict[str, np.ndarray] = {"indices": np.asarray(indices)}
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    for n, i in enumerate(indices):
        image, target = dataset[i]
        image = image.as_subclass(torch.Tensor)
        with torch.no_grad():
            fused, weights = model.fuse(model.features(image[None].to(device)))
        rgb = ((image * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
        arrays[f"image{n}"] = rgb.numpy()
        arrays[f"boxes{n}"] = target_boxes(target).numpy()
        arrays[f"labels{n}"] = target["labels"].numpy()
        arrays[f"image_id{n}"] = np.asarray(int(target["info"]["image_id"]))
        for k, f in enumerate(fused):
            arrays[f"activation{n}_level{k}"] = f[0].mean(0).cpu().numpy().astype(np.float32)
            if weights is not None:
                arrays[f"weights{n}_level{k}"] = weights[k][0].cpu().numpy().astype(np.float32)
    return arrays


# Columns of the CSV files (None: those of the rows); empty files keep their header.
CSV_FILES: dict[str, tuple[str, list[str] | None]] = {
    "gradients": ("gradients.csv", None),
    "bins": (
        "gradient_bins.csv",
        ["mode", "level", "w_low", "w_high", "locations", *BIN_MEASURES],
    ),
    "agreement": (
        "agreement.csv",
        [
            "checkpoint",
            "fraction",
            "bucket",
            "objects",
            "agree",
            "rate",
            "chance",
            "w_assigned_mean",
        ],
    ),
}


@dataclass
class Findings:
    """What a run's checkpoints gave: the rows of each CSV file (``CSV_FILES``), the weight-map
    arrays (final weights), whether the fusion has weights, and its name."""

    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {key: [] for key in CSV_FILES}
    )
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    has_weights: bool = False
    fusion: str | None = None

    def add(
        self, label: str, frac: float, samples: dict[str, dict[str, np.ndarray]], records: list
    ) -> None:
        """One checkpoint's conflict samples (per gradient mode) and agreement records."""
        for mode, arr in samples.items():
            for row in summarize(arr):
                self.rows["gradients"].append(
                    {"checkpoint": label, "fraction": frac, "mode": mode, **row}
                )
            if label == "final":
                self.rows["bins"] += [{"mode": mode, **row} for row in binned_by_weight(arr)]
        self.rows["agreement"] += agreement_rows(label, frac, records)
        self.has_weights = self.has_weights or bool(records)


def analyze_weights(
    weights_path: Path,
    label: str,
    cfg: dict[str, Any],
    dataset,  # noqa: ANN001
    loader: DataLoader,
    device: torch.device,
) -> tuple[torch.nn.Module, dict[str, dict[str, np.ndarray]], list]:
    """One checkpoint: its model (eval mode, running statistics as saved), conflict samples and
    agreement records."""
    model, blob = load_weights(weights_path, device)
    check_classes(blob, weights_path, dataset)
    criterion = build_criterion(model, cfg["train"]).to(device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    samples = analyze_checkpoint(model, criterion, loader, device, label)
    model.load_state_dict(state)  # undo the running-statistics updates of training mode
    records = agreement_records(model, criterion, loader, device)
    return model, samples, records


def write_findings(out: Path, findings: Findings) -> list[Path]:
    """The CSV files and maps.npz (removed when stale: no maps this time)."""
    written = []
    for key, (name, columns) in CSV_FILES.items():
        frame = pd.DataFrame(findings.rows[key], columns=columns)
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        written.append(out / name)
    if findings.maps:
        with atomic_path(out / "maps.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **findings.maps)
        written.append(out / "maps.npz")
    elif (out / "maps.npz").exists():
        (out / "maps.npz").unlink()  # a stale file from a run with map_images > 0
    return written


def analyze_run(
    cfg: dict[str, Any],
    settings: dict[str, Any],
    paths: RunPaths,
    device: torch.device,
    source: str = "params.yaml",
) -> list[Path]:
    """Analyse one (experiment, seed) run; returns the files written."""
    settings = check_settings(settings, source)
    ckpts = checkpoints(paths, settings["fractions"])
    dataset = eval_dataset(cfg)
    n_images = len(dataset) if settings["images"] is None else min(settings["images"], len(dataset))
    subset = Subset(dataset, range(n_images))
    loader = DataLoader(subset, batch_size=settings["batch_size"], collate_fn=collate)

    findings = Findings()
    for label, frac, weights_path in ckpts:
        model, samples, records = analyze_weights(weights_path, label, cfg, dataset, loader, device)
        findings.add(label, frac, samples, records)
        if label == "final":
            findings.fusion = (model.spec or {}).get("fusion")
            if settings["map_images"]:
                chosen = choose_map_images(subset, settings["map_images"])
                findings.maps = weight_maps(model, dataset, chosen, device)
        log.info("%s %s: analysed %d images", cfg["name"], label, n_images)

    out = paths.analysis
    written = write_findings(out, findings)
    write_json(
        out / "summary.json",
        {
            "experiment": cfg["name"],
            "seed": int(cfg["train"]["seed"]),
            "fusion": findings.fusion,
            "has_weights": findings.has_weights,
            "settings": settings,
            "images": n_images,
            "dataset": str(dataset.ann_file),
            "checkpoints": [
                {"label": label, "fraction": frac, "weights": str(p)} for label, frac, p in ckpts
            ],
            "definitions": DEFINITIONS,
            "meta": provenance({"config": cfg, "analysis": settings}, device),
        },
    )
    written.append(out / "summary.json")
    return written
