"""``study analyze`` end to end (study/analysis/run.py): a tiny ASFF run trained with snapshots,
then analysed at its initial, mid-run and final weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision import tv_tensors

from study.analysis import analyze_run
from study.analysis.gradients import POSITIVE, assigned_labels, object_areas, target_boxes
from study.analysis.run import check_settings, choose_map_images, image_kinds
from study.config import load_experiment
from study.data import CocoDetection, collate, eval_dataset
from study.data.synthetic import MIN_IMG_SIZE, generate
from study.engine.loss import build_criterion
from study.engine.trainer import Trainer
from study.errors import ConfigError, StudyError
from study.models.weights import load_weights, save_weights
from study.models.zoo import build_model_from_config
from study.runs import RunPaths

REPO = Path(__file__).resolve().parents[2]


def tiny_cfg(root: Path, fusion: str) -> dict:
    overrides = {
        "data": {"root": str(root), "workers": 0},
        "model": {"width": 0.125, "depth": 0.34},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "img_size": 96,
            "device": "cpu",
            "snapshots": [0.0, 0.5],
            "multiscale": {"enabled": False},  # train at img_size (96), not up to 608
        },
        "eval": {"img_size": 96, "device": "cpu"},
    }
    return load_experiment(
        REPO / "experiments" / "fusion" / f"{fusion}.yaml",
        None,
        None,
        overrides,
        f"fusion/{fusion}",
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, RunPaths]:
    root = tmp_path_factory.mktemp("analyze")
    generate(root / "data", num_train=8, num_val=6, img_size=MIN_IMG_SIZE, seed=0)
    cfg = tiny_cfg(root / "data", "asff")
    paths = RunPaths(
        root / "runs",
        root / "models" / "seed0.pt",
        root / "results",
        root / "models" / "snapshots" / "seed0",
        root / "configs",
    )
    # A module fixture is set up before the function fixture that keeps torch at one thread
    # (tests/conftest.py): with two threads on a busy 2-core machine training is ~50x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, paths.run_dir, snapshot_dir=paths.snapshots)
        trainer.fit()
        save_weights(trainer.final_model, trainer.dataset, cfg, paths.model)
    finally:
        torch.set_num_threads(threads)
    return cfg, paths


def test_analyze_run_writes_every_checkpoint_and_mode(trained) -> None:
    cfg, paths = trained
    settings = {"images": 6, "batch_size": 4, "map_images": 2}
    written = analyze_run(cfg, settings, paths, torch.device("cpu"))
    assert {p.name for p in written} == {
        "gradients.csv",
        "gradient_bins.csv",
        "agreement.csv",
        "maps.npz",
        "summary.json",
    }
    grads = pd.read_csv(paths.analysis / "gradients.csv")
    assert list(dict.fromkeys(grads["checkpoint"])) == ["init", "50%", "final"]
    assert list(dict.fromkeys(grads["fraction"])) == [0.0, 0.5, 1.0]
    assert set(grads["mode"]) == {"full", "detached"}
    assert set(grads["bucket"]) == {"all", "small", "medium", "large"}
    assert set(grads["level"]) == {0, 1, 2}
    # the location set comes from the ground truth alone: the same at every checkpoint and mode
    counts = grads.pivot_table(
        index=["level", "bucket"], columns=["checkpoint", "mode"], values="locations"
    )
    assert (counts.nunique(axis=1) == 1).all()
    located = grads[(grads["bucket"] == "all") & (grads["locations"] > 0)]
    assert len(located) >= 6  # at least two levels with locations, every checkpoint and mode
    assert (located["own_norm_mean"] > 0).all() and (located["cross_norm_mean"] >= 0).all()
    assert located["negative_cosine"].between(0, 1).all()
    assert located["share_mean"].between(0, 1).all()
    assert located["w_others_mean"].between(0, 1).all()  # ASFF has weights
    # the weights depend on the features: the detached gradient differs from the full one
    full = located[located["mode"] == "full"]["share_mean"].to_numpy()
    detached = located[located["mode"] == "detached"]["share_mean"].to_numpy()
    assert not np.allclose(full, detached)
    agree = pd.read_csv(paths.analysis / "agreement.csv")
    assert set(agree["checkpoint"]) == {"init", "50%", "final"}
    assert agree["rate"].between(0, 1).all() and (agree["objects"] > 0).all()
    with np.load(paths.analysis / "maps.npz") as maps:
        assert len(maps["indices"]) == 2
        assert maps["image0"].shape == (96, 96, 3) and maps["image0"].dtype == np.uint8
        w = maps["weights0_level2"]
        assert w.shape == (3, 12, 12) and np.allclose(w.sum(0), 1, atol=1e-5)
        assert maps["activation1_level0"].shape == (3, 3)
    summary = json.loads((paths.analysis / "summary.json").read_text())
    assert summary["images"] == 6 and summary["fusion"] == "asff" and summary["has_weights"]
    assert [c["label"] for c in summary["checkpoints"]] == ["init", "50%", "final"]
    assert {"share", "cross_norm", "negative_cosine", "locations"} <= set(summary["definitions"])
    assert summary["meta"]["threads"] >= 1


def test_the_fixed_locations_are_the_losss_positives(trained) -> None:
    """``assigned_labels`` reproduces the loss's own assignment (any anchor slot positive) of
    the trained model's batch: the analysed cells are where the loss puts objects."""
    cfg, paths = trained
    model, _ = load_weights(paths.model, torch.device("cpu"))
    criterion = build_criterion(model, cfg["train"])
    dataset = eval_dataset(cfg)
    images, targets = collate([dataset[i] for i in range(4)])
    plain = [{"boxes": target_boxes(t), "labels": t["labels"]} for t in targets]
    model.train()
    outputs = model.predict_levels(model.fuse(model.features(images))[0])
    levels = criterion.level_losses(outputs, plain, (96, 96))
    grids = [tuple(level.obj_target.shape[-2:]) for level in levels]
    labels = assigned_labels(
        criterion, plain, object_areas(targets, torch.device("cpu")), grids, model.strides
    )
    assert sum(int(lab.label.sum()) for lab in labels) > 0
    for level, lab in zip(levels, labels, strict=True):
        assert torch.equal((level.obj_target > 0).any(dim=1), lab.label == POSITIVE)


def test_a_fusion_without_weights_has_no_agreement_and_one_gradient(trained, tmp_path) -> None:
    cfg, paths = trained
    cfg = tiny_cfg(Path(cfg["data"]["root"]), "sum")
    torch.manual_seed(0)
    model = build_model_from_config(cfg, 5)
    dataset = CocoDetection(cfg["data"]["root"], "val2017")
    only = RunPaths(tmp_path, tmp_path / "m.pt", tmp_path / "r", tmp_path / "none", tmp_path / "c")
    save_weights(model, dataset, cfg, only.model)
    analyze_run(cfg, {"images": 4, "map_images": 1}, only, torch.device("cpu"))
    grads = pd.read_csv(only.analysis / "gradients.csv")
    assert list(grads["checkpoint"].unique()) == ["final"]  # no snapshots
    full, detached = (
        grads[grads["mode"] == m].reset_index(drop=True) for m in ("full", "detached")
    )
    pd.testing.assert_frame_equal(full.drop(columns="mode"), detached.drop(columns="mode"))
    assert grads["w_others_mean"].isna().all()
    assert pd.read_csv(only.analysis / "agreement.csv").empty
    with np.load(only.analysis / "maps.npz") as maps:
        assert "weights0_level0" not in maps.files and "activation0_level0" in maps.files


def test_settings_are_checked_by_name_and_value() -> None:
    assert check_settings({}, "p.yaml")["images"] is None
    with pytest.raises(ConfigError, match="p.yaml: analysis: unknown key.*imgs; valid: images"):
        check_settings({"imgs": 3}, "p.yaml")
    with pytest.raises(ConfigError, match="analysis.batch_size must be an integer >= 1, got 0"):
        check_settings({"batch_size": 0}, "p.yaml")
    with pytest.raises(ConfigError, match="analysis.images must be an integer >= 1, got 'all'"):
        check_settings({"images": "all"}, "p.yaml")


def test_missing_weights_name_the_file(trained, tmp_path: Path) -> None:
    cfg, _ = trained
    paths = RunPaths(
        tmp_path, tmp_path / "absent.pt", tmp_path / "r", tmp_path / "s", tmp_path / "c"
    )
    with pytest.raises(StudyError, match="absent.pt: weights file not found"):
        analyze_run(cfg, {}, paths, torch.device("cpu"))


class CountingImages:
    """A dataset of targets only (images at scale 0.5 of the original) that counts its reads."""

    def __init__(self, boxes: list[list[list[float]]]) -> None:
        self.boxes = boxes
        self.reads = [0] * len(boxes)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> tuple[None, dict]:
        self.reads[i] += 1
        box = torch.tensor(self.boxes[i], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(96, 96)),
            "info": {"scale": (0.5, 0.5)},
        }
        return None, target


# resized pixels; original = 2x per axis: 10 x 10 -> 400 (small), 40 x 40 -> 6400 (medium),
# 60 x 60 -> 14400 (large; 3600 and medium if the scale were ignored)
SMALL, MEDIUM, LARGE = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 60.0, 60.0]
NESTED = [[20.0, 20.0, 30.0, 30.0], [10.0, 10.0, 70.0, 70.0]]  # small inside large


def test_map_images_by_kind_each_image_read_once() -> None:
    images = CountingImages([[SMALL], [LARGE], NESTED, [MEDIUM], [SMALL], []])
    assert [image_kinds(images[i][1]) for i in range(6)] == [
        {"small"},
        {"large"},
        {"nested", "small", "large"},
        {"medium"},
        {"small"},
        set(),
    ]
    images.reads = [0] * 6
    # nested: image 2; small: the first one left, 0; medium: 3; large: 1
    assert choose_map_images(images, 4) == [2, 0, 3, 1]
    assert max(images.reads) == 1 and images.reads[4:] == [0, 0]
    assert choose_map_images(CountingImages([[SMALL], [LARGE], NESTED]), 2) == [2, 0]
    # no large object: after the kinds found, the first remaining images in order
    assert choose_map_images(CountingImages([[SMALL], [], NESTED, [MEDIUM], [SMALL]]), 6) == [
        2,
        0,
        3,
        1,
        4,
    ]
