"""The ``study`` command line (study/cli.py): help, clear one-line errors, listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from study_helpers import tiny_study

from study.cli import build_parser, main
from study.models import available

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = (
    "data",
    "configure",
    "train",
    "pretrain",
    "evaluate",
    "bench",
    "analyze",
    "report",
    "notebooks",
    "import-official",
    "models",
    "verify",
    "compare",
)
FULL_PARAMS = {
    "yolov3-original": "61,949,149",
    "baseline": "75,554,428",
    "asff": "79,409,493",
    "asff-star": "86,011,821",
}


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


# ---------------------------------------------------------------------------------------------
# Help
# ---------------------------------------------------------------------------------------------


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: study")
    for name in SUBCOMMANDS:
        assert name in out


def test_subcommands_are_the_pipeline_stages() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: study {command}")
    if command in ("train", "evaluate", "analyze"):
        for opt in ("experiment", "--profile", "--params", "--set"):
            assert opt in out
    if command == "train":
        assert "--max-iters" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code([]) == 2
    assert "required" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Errors: exit code 2, one line naming the problem, no traceback
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "evaluate", "bench"])
def test_missing_experiment(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert main([command, "no-such-exp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"study {command}: error: ")
    assert "experiments/no-such-exp.yaml" in err
    assert "table1/baseline" in err and "fusion/asff" in err  # lists the known experiments
    assert "_base" not in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_missing_experiment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "exp.yaml"
    assert main(["train", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "Traceback" not in err


def test_config_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["train", "table1/baseline", "--set", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epochz'" in err and "epochs" in err
    assert main(["train", "table1/baseline", "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    assert main(["train", "table1/baseline", "--set", "train.epochs"]) == 2
    assert "KEY.PATH=VALUE" in capsys.readouterr().err


def test_missing_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    missing = tmp_path / "none.pt"
    args = ["evaluate", "fusion/none", "--profile", "smoke", "--weights", str(missing)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"study evaluate: error: {missing}: weights file not found" in err


def _tiny_study(tmp_path: Path) -> Path:
    """A working directory with experiments/, a 3-image dataset and a tiny profile."""
    return tiny_study(tmp_path)


def test_dataset_param_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _tiny_study(tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["dataset"] = "data/other"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    assert main(["train", "table1/baseline", "--max-iters", "1"]) == 2
    err = capsys.readouterr().err
    assert "data.root='data'" in err and "'data/other'" in err and "Traceback" not in err
    assert not (work / "runs").exists()


def test_unknown_model_in_an_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _tiny_study(tmp_path)
    (work / "experiments" / "typo.yaml").write_text("_base_: _base.yaml\nmodel: {name: asf}\n")
    monkeypatch.chdir(work)
    assert main(["train", "typo", "--max-iters", "1"]) == 2
    err = capsys.readouterr().err
    assert "'asf'" in err and all(name in err for name in available())
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Commands that run in a moment
# ---------------------------------------------------------------------------------------------


def test_models_lists_every_variant_and_fusion(capsys: pytest.CaptureFixture[str]) -> None:
    from study.models.fusions import FUSIONS

    assert main(["models", "--width", "0.125", "--img-size", "128"]) == 0
    variants, fusions = capsys.readouterr().out.strip().split("\n\n")
    lines = variants.splitlines()
    assert [line.split()[0] for line in lines] == available()
    for line in lines:
        name = line.split()[0]
        if name in FULL_PARAMS:
            assert f"{FULL_PARAMS[name]} parameters at 80 classes" in line
    rows = {r.split()[0]: r.split()[1:] for r in fusions.splitlines()[2:]}
    assert sorted(rows) == sorted(FUSIONS.names())
    own = {name: int(cols[0].replace(",", "")) for name, cols in rows.items()}
    detector = {name: int(cols[2].replace(",", "")) for name, cols in rows.items()}
    # the detector differs between strategies by the fusion module alone
    assert {detector[n] - own[n] for n in rows} == {detector["none"] - own["none"]}
    assert own["none"] < own["sum"] < own["asff"] and float(rows["asff"][1]) > 0


def test_data_writes_the_synthetic_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "synthetic": {
                    "out": str(tmp_path / "ignored"),
                    "num_train": 3,
                    "num_val": 2,
                    "img_size": 160,
                    "seed": 1,
                }
            }
        )
    )
    out = tmp_path / "syn"
    assert main(["data", "--params", str(params), "--out", str(out)]) == 0
    assert "generated" in capsys.readouterr().out
    assert not (tmp_path / "ignored").exists()
    train = json.loads((out / "annotations" / "instances_train2017.json").read_text())
    val = json.loads((out / "annotations" / "instances_val2017.json").read_text())
    assert len(train["images"]) == 3 and len(val["images"]) == 2
    assert len(list((out / "train2017").iterdir())) == 3
    stats = json.loads((out / "stats.json").read_text())
    assert stats["params"]["seed"] == 1 and stats["params"]["img_size"] == 160


def test_seed_names_the_run_and_sets_the_training_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _tiny_study(tmp_path)
    monkeypatch.chdir(work)
    assert main(["train", "fusion/none", "--seed", "3", "--max-iters", "1"]) == 0
    summary = json.loads(Path("results/fusion/none/seed3/train_summary.json").read_text())
    assert summary["config"]["train"]["seed"] == 3 and summary["config"]["name"] == "fusion/none"
    assert Path("models/fusion/none/seed3.pt").is_file()
    assert Path("runs/fusion/none/seed3/last.pt").is_file()
    assert main(["evaluate", "fusion/none", "--seed", "3"]) == 0
    metrics = json.loads(Path("results/fusion/none/seed3/metrics.json").read_text())
    assert metrics["meta"]["config"]["train"]["seed"] == 3
    assert Path("results/fusion/none/seed3/detections.json.gz").is_file()
    assert main(["evaluate", "fusion/none", "--seed", "4"]) == 2  # that run was never trained


def test_bad_fusion_args_in_an_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _tiny_study(tmp_path)
    (work / "experiments" / "fusion" / "typo.yaml").write_text(
        "_base_: _base.yaml\nmodel: {fusion: asff, fusion_args: {compres: 4}}\n"
    )
    monkeypatch.chdir(work)
    assert main(["train", "fusion/typo", "--max-iters", "1"]) == 2
    err = capsys.readouterr().err
    assert "fusion/typo.yaml: model.fusion_args: fusion 'asff' has no argument(s) compres" in err
    assert "valid: compress_c" in err and "Traceback" not in err
    assert not (work / "runs").exists()


def test_data_without_a_synthetic_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("profile: default\n")
    assert main(["data", "--params", str(params), "--out", str(tmp_path / "x")]) == 2
    assert "no `synthetic` section" in capsys.readouterr().err


def test_test_sizes_and_bench_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trained runs: `evaluate --test-sizes` writes one metrics file per extra size,
    `bench` times both models interleaved on real images and writes the two CSVs; bad bench
    settings and a missing model are one-line errors."""
    import pandas as pd

    work = _tiny_study(tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["fusions"] = ["none", "asff"]
    params["profiles"]["tiny"]["eval"] = {"img_size": 64, "test_sizes": [64, 96], "batch_size": 1}
    params["bench"] = {
        "runs": 4,
        "rounds": 2,
        "warmup": 1,
        "images": 1,
        "throughput_batch": 2,
        "throughput_runs": 1,
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    assert main(["bench"]) == 2  # nothing trained yet
    assert "models/fusion/none/seed0.pt: weights file not found" in capsys.readouterr().err
    for fusion in ("none", "asff"):
        assert main(["train", f"fusion/{fusion}", "--max-iters", "1"]) == 0
        assert main(["evaluate", f"fusion/{fusion}", "--test-sizes"]) == 0
    run = Path("results/fusion/none/seed0")
    assert sorted(p.name for p in (run / "test_sizes").iterdir()) == [
        "s96.detections.json.gz",
        "s96.json",
    ]
    m96 = json.loads((run / "test_sizes" / "s96.json").read_text())
    assert m96["meta"]["protocol"]["img_size"] == 96 and "AP" in m96
    # the learning curve: the initial snapshot and the final weights, on the same images
    curve = json.loads((run / "curve.json").read_text())
    assert [(p["epoch"], p["iteration"]) for p in curve] == [(0, 0), (1, 1)]
    assert {p["images"] for p in curve} == {1} and all("AP" in p for p in curve)
    assert main(["bench", "--set", "bench.runs=0"]) == 2
    assert "bench.runs: expected an integer >= 1" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["bench"]) == 0
    bench = pd.read_csv("results/bench.csv")
    assert list(zip(bench["model"], bench["size"], strict=True)) == [
        ("fusion/none", 64),
        ("fusion/asff", 64),
        ("fusion/none", 96),
        ("fusion/asff", 96),
    ]
    assert set(bench["dtype"]) == {"fp32"} and (bench["runs"] == 4).all()
    assert (bench["forward_ms_median"] > 0).all() and (bench["nms_ms_median"] > 0).all()
    assert bench["git_revision"].notna().all() and (bench["threads"] >= 1).all()
    over = pd.read_csv("results/bench_overhead.csv")
    assert list(over["model"]) == ["fusion/asff"] * 2 and (over["reference"] == "fusion/none").all()
    assert (over["ratio_round_min"] <= over["ratio_round_max"]).all()


def test_data_check_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from study.data.synthetic import MIN_IMG_SIZE, generate

    generate(tmp_path, num_train=2, num_val=2, img_size=MIN_IMG_SIZE, seed=0)
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "train2017" in capsys.readouterr().out
    ann = tmp_path / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["images"][1]["id"] = data["images"][0]["id"]  # two files merged: colliding image ids
    data["annotations"][0].pop("area")
    ann.write_text(json.dumps(data))
    assert main(["data", "check", str(tmp_path), "--split", "val2017"]) == 2
    out = capsys.readouterr().out
    assert "duplicate" in out and "area" in out and "train2017" not in out


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 50, "truncate", "not-a-dict"], ids=str)
def test_a_corrupt_resume_checkpoint_is_one_error_and_touches_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: bytes | str,
) -> None:
    work = _tiny_study(tmp_path)
    monkeypatch.chdir(work)
    assert main(["train", "fusion/none", "--seed", "3", "--max-iters", "1"]) == 0
    ckpt = Path("runs/fusion/none/seed3/last.pt")
    if content == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif content == "not-a-dict":
        torch.save([1, 2, 3], ckpt)
    else:
        ckpt.write_bytes(content)
    before = {p: p.read_bytes() for p in Path(".").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "fusion/none", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "--force" in err and "Traceback" not in err
    after = {p: p.read_bytes() for p in Path(".").rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing removed
    # --force starts the run over
    assert main(["train", "fusion/none", "--seed", "3", "--max-iters", "1", "--force"]) == 0
