"""``study evaluate`` refuses what cannot be scored before any inference, exit 2, and leaves the
run's earlier files as they were: weights with non-finite values (they would score AP 0 with a
warning and replace the metrics) and a split whose images carry no annotation (every metric
would be null)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from study.cli import main
from study.config import load_experiment
from study.errors import CheckpointError, DataError
from study.models import build_model
from study.stages.evaluate import evaluate, refuse_non_finite

REPO = Path(__file__).resolve().parents[2]


def _setup(
    tmp_path: Path, annotated: bool, box: list[float] | None = None, crowd: int = 0
) -> tuple[dict, Path, Path]:
    """(config, weights file, output folder holding an earlier metrics.json): a 2-class COCO
    split of two images, with or without an annotation (``box``, ``crowd``), and a tiny
    model's weights."""
    root = tmp_path / "data"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in (1, 2)]
    anns = (
        [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": box or [4, 4, 20, 20],
                "area": 400,
                "iscrowd": crowd,
            }
        ]
        if annotated
        else []
    )
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    cfg = load_experiment(REPO / "experiments" / "fusion" / "none.yaml", params_path=None)
    cfg["data"]["root"] = str(root)
    cfg["eval"]["device"] = "cpu"
    model = build_model("yolov3-spp", num_classes=2, width=0.125, depth=0.34)
    weights = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "spec": model.spec}, weights)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"AP": 0.5}')
    return cfg, weights, out


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    cfg, weights, out = _setup(tmp_path, annotated=True)
    blob = torch.load(weights, weights_only=False)
    name = next(k for k, v in blob["model"].items() if v.is_floating_point())
    blob["model"][name].view(-1)[0] = float("nan")
    torch.save(blob, weights)
    with pytest.raises(CheckpointError, match=f"w.pt: {name} has 1 non-finite value"):
        evaluate(cfg, weights=str(weights), out_dir=str(out))
    assert (out / "metrics.json").read_text() == '{"AP": 0.5}'
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("crowd", [None, 1], ids=["no annotation", "only a crowd region"])
def test_a_split_without_a_box_is_refused_before_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd: int | None
) -> None:
    cfg, weights, out = _setup(tmp_path, annotated=crowd is not None, crowd=crowd or 0)
    monkeypatch.setattr("study.eval.coco_eval._infer", _no_inference)
    with pytest.raises(DataError, match="none of the 2 images .* has an annotation .* score"):
        evaluate(cfg, weights=str(weights), out_dir=str(out))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("box", [[70, 70, 5, 5], [4, 4, -3, 8]], ids=["outside", "negative"])
def test_a_box_the_loader_drops_is_refused_before_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, box: list[float]
) -> None:
    """The rule `study train` also checks before training (tests/test_integrity.py)."""
    cfg, weights, out = _setup(tmp_path, annotated=True, box=box)
    monkeypatch.setattr("study.eval.coco_eval._infer", _no_inference)
    with pytest.raises(
        DataError, match=r"instances_val2017.json: 1 ground-truth boxes are dropped"
    ):
        evaluate(cfg, weights=str(weights), out_dir=str(out))
    assert (out / "metrics.json").read_text() == '{"AP": 0.5}'
    from study.data import eval_dataset

    for how in ("score", "ignore"):  # the setting that says how to score it
        eval_dataset(cfg).check_scorable(how)


def _no_inference(*args: object, **kwargs: object) -> None:
    raise AssertionError("inference ran before the split was checked")


def test_the_command_exits_2_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    cfg, weights, out = _setup(tmp_path, annotated=False)
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(
        f"_base_: {REPO / 'experiments' / 'fusion' / 'none.yaml'}\n"
        f"data: {{root: {cfg['data']['root']}}}\neval: {{device: cpu}}\n"
    )
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", str(experiment), "--weights", str(weights), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "has an annotation" in err and "Traceback" not in err
    assert (out / "metrics.json").read_text() == '{"AP": 0.5}'


def test_finite_weights_and_an_annotated_split_pass(tmp_path: Path) -> None:
    cfg, weights, _ = _setup(tmp_path, annotated=True)
    model = build_model("yolov3-spp", num_classes=2, width=0.125, depth=0.34)
    refuse_non_finite(model, weights)
    from study.data import eval_dataset

    eval_dataset(cfg).check_scorable("error")
