"""COCOeval wrapper and the end-to-end evaluate() on a tiny COCO fixture (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from study.errors import ConfigError, StudyError
from study.eval.coco_eval import (
    autocast_context,
    coco_metrics,
    evaluate,
    read_detections,
    run_inference,
    write_metrics,
)

BASE = Path(__file__).resolve().parents[2] / "experiments" / "_base.yaml"


def test_perfect_detections_give_ap_one_and_empty_bucket_none(coco_gt, perfect):
    m = coco_metrics(coco_gt, perfect)
    for key in ("AP", "AP50", "AP75", "APm", "APl", "ARmax100"):
        assert m[key] == pytest.approx(1.0), key
    assert m["APs"] is None  # no ground truth smaller than 32^2
    assert "Average Precision" in m["summary"]


def test_detection_on_a_crowd_region_is_not_a_false_positive(coco_gt, perfect):
    crowd_hit = {
        "image_id": 1,
        "category_id": 1,
        "bbox": [310.0, 310.0, 80.0, 80.0],
        "score": 0.95,
    }  # higher score than all true positives
    assert coco_metrics(coco_gt, [*perfect, crowd_hit])["AP"] == pytest.approx(1.0)
    wrong_place = dict(crowd_hit, bbox=[500.0, 10.0, 80.0, 80.0])
    assert coco_metrics(coco_gt, [*perfect, wrong_place])["AP"] < 0.99


def test_zero_detections_give_zero_without_crash(coco_gt):
    with pytest.warns(RuntimeWarning, match="no detections"):
        m = coco_metrics(coco_gt, [])
    for key in ("AP", "AP50", "AP75", "APm", "APl", "ARmax100"):
        assert m[key] == 0.0, key
    assert m["APs"] is None


def test_iou_about_0_62_counts_at_0_5_not_at_0_75(coco_gt, perfect):
    shifted = []
    for r in perfect:
        x, y, w, h = r["bbox"]
        dx = w * (1 - 0.62) / 1.62  # horizontal shift giving IoU = (w - dx) / (w + dx) = 0.62
        shifted.append(dict(r, bbox=[x + dx, y, w, h]))
    m = coco_metrics(coco_gt, shifted)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == 0.0
    assert m["AP"] == pytest.approx(0.3)  # matched at IoU 0.50, 0.55, 0.60 of the ten thresholds


def test_img_ids_restrict_scoring_to_a_subset(coco_gt, perfect):
    only_image_1 = [r for r in perfect if r["image_id"] == 1]
    assert coco_metrics(coco_gt, only_image_1)["AP"] < 0.8  # images 2 and 3 missed
    assert coco_metrics(coco_gt, only_image_1, img_ids=[1])["AP"] == pytest.approx(1.0)


def test_results_for_unknown_images_are_a_study_error(coco_gt):
    bad = [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}]
    with pytest.raises(StudyError, match="do not match"):
        coco_metrics(coco_gt, bad)


def test_coco_eval_prints_nothing(coco_gt, perfect, capsys):
    coco_metrics(coco_gt, perfect)
    assert capsys.readouterr().out == ""


def _cfg(root: Path, eval_size: int) -> dict:
    cfg = yaml.safe_load(BASE.read_text())
    cfg.update(name="fake", profile="test")
    cfg["data"].update(root=str(root), workers=0)
    cfg["eval"].update(img_size=eval_size, batch_size=2)
    return cfg


def test_run_inference_maps_boxes_and_labels_back(
    coco_root, eval_size, fake_model, fake_dataset, collate
):
    results = run_inference(
        fake_model, fake_dataset, _cfg(coco_root, eval_size)["eval"], "cpu", collate_fn=collate
    )
    assert len(results) == 4  # duplicates removed by NMS, junk below the threshold
    by_key = {(r["image_id"], r["category_id"]): r for r in results}
    assert by_key[(1, 3)]["bbox"] == pytest.approx([10, 10, 50, 60], abs=0.02)  # square resize
    assert by_key[(2, 3)]["bbox"] == pytest.approx([50, 50, 120, 100], abs=0.02)  # letterbox
    assert by_key[(3, 1)]["bbox"] == pytest.approx([20, 20, 60, 50], abs=0.02)
    assert by_key[(1, 1)]["score"] == pytest.approx(0.9 * 0.95, abs=1e-5)


def test_evaluate_writes_metrics_and_detections(
    coco_root, eval_size, fake_model, fake_dataset, collate, tmp_path
):
    cfg = _cfg(coco_root, eval_size)
    model = fake_model.train()
    out = tmp_path / "results" / "fake"
    m = evaluate(model, fake_dataset, cfg, "cpu", out_dir=out, collate_fn=collate)
    assert model.training  # mode restored
    assert m["AP"] == pytest.approx(1.0) and m["APs"] is None

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["AP"] == pytest.approx(1.0) and saved["AP75"] == pytest.approx(1.0)
    assert saved["APs"] is None and "summary" not in saved
    meta = saved["meta"]
    ann = coco_root / "annotations" / "instances_val2017.json"
    assert meta["dataset"]["ann_file_sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()[:16]
    assert meta["dataset"]["num_images"] == 3 and meta["dataset"]["split"] == "val2017"
    assert meta["protocol"] == {
        "img_size": eval_size,
        "protocol": "square",
        "conf_thresh": 0.001,
        "nms_thresh": 0.65,
        "max_dets": None,
        "dropped_gt": "error",
    }
    assert meta["ground_truth"] == {
        "annotations": 5,
        "crowd": 1,
        "dropped_at_load": 0,
        "dropped_gt": "error",
        "scored": 4,
    }
    assert meta["provenance"]["threads"] == torch.get_num_threads()
    assert meta["config"]["eval"]["batch_size"] == 2 and meta["profile"] == "test"
    assert meta["num_detections"] == 4 and meta["eval_seconds"] >= 0
    assert meta["torch"] == torch.__version__ and meta["device"].startswith("cpu")
    assert "Average Precision" in meta["coco_summary"]

    dets = read_detections(out / "detections.json.gz")
    assert len(dets) == 4 and {d["category_id"] for d in dets} == {1, 3}
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_evaluate_with_nothing_above_threshold(
    coco_root, eval_size, fake_model, fake_dataset, collate
):
    cfg = _cfg(coco_root, eval_size)
    cfg["eval"]["conf_thresh"] = 0.99  # nothing passes
    with pytest.warns(RuntimeWarning):
        m = evaluate(fake_model, fake_dataset, cfg, "cpu", collate_fn=collate)
    assert m["AP"] == 0.0 and m["meta"]["num_detections"] == 0


def test_write_metrics_drops_summary(tmp_path):
    write_metrics(tmp_path / "m.json", {"AP": 0.5, "summary": "text"}, {"x": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"AP": 0.5, "meta": {"x": 1}}


def test_autocast_context_modes():
    cpu = torch.device("cpu")
    for off in (None, False, "off"):
        with autocast_context(cpu, off):
            assert not torch.is_autocast_enabled("cpu")
    with autocast_context(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ConfigError, match="amp"):
        autocast_context(cpu, "int8")


def test_dropped_ground_truth_is_refused_scored_or_ignored_as_asked(coco_root, perfect) -> None:
    """Annotation 5 stands for a box the loader drops: a detector never sees it in training, and a
    perfect detector of the loaded boxes loses AP to it when it is scored."""
    from study.data import load_coco
    from study.errors import DataError
    from study.eval.coco_eval import scored_ground_truth

    ann = coco_root / "annotations" / "instances_val2017.json"
    gt = load_coco(ann)
    perfect = [r for r in perfect if r["image_id"] != 3]  # annotation 5 is image 3's only box
    assert len(perfect) == 3
    with pytest.raises(DataError, match=r"1 ground-truth boxes are dropped .*ids 5\)"):
        scored_ground_truth(gt, [5], "error", ann)
    scored, record = scored_ground_truth(gt, [5], "score", ann)
    assert record["scored"] == 4 and coco_metrics(scored, perfect)["AP"] < 1.0
    ignored, record = scored_ground_truth(gt, [5], "ignore", ann)
    assert record == {
        "annotations": 5,
        "crowd": 1,
        "dropped_at_load": 1,
        "dropped_gt": "ignore",
        "scored": 3,
    }
    assert coco_metrics(ignored, perfect)["AP"] == pytest.approx(1.0)
    assert gt.anns[5]["iscrowd"] == 0  # the dataset's own annotations are not changed
    clean, _ = scored_ground_truth(gt, [], "error", ann)
    assert clean is gt
