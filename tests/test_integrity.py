"""Trustworthy results (study/pipeline.py, study/eval/verify.py): a failed or refused command
leaves an earlier good run's files intact and matching each other; committed metrics re-score
exactly from their detections; bad input ends in one clear line with exit code 2.

One tiny study is trained and evaluated once per module; each test works on its own copy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from study_helpers import tiny_study

from study.cli import main
from study.errors import StudyError

REPO = Path(__file__).resolve().parents[1]
RUN = Path("results/fusion/none/seed0")
MODEL = Path("models/fusion/none/seed0.pt")


def tree_digest(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (what a failed command must leave untouched)."""
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study folder with fusion/none trained (one epoch: 2 iterations) and evaluated at two
    sizes."""
    work = tiny_study(
        tmp_path_factory.mktemp("study"),
        num_train=4,
        num_val=2,
        eval_cfg={"img_size": 64, "test_sizes": [64, 96], "batch_size": 2},
    )
    cwd = Path.cwd()
    try:
        os.chdir(work)
        assert main(["train", "fusion/none"]) == 0
        assert main(["evaluate", "fusion/none", "--test-sizes"]) == 0
    finally:
        os.chdir(cwd)
    return work


@pytest.fixture
def study(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "study"
    shutil.copytree(trained, work)
    monkeypatch.chdir(work)
    return work


def run_files() -> dict[str, str]:
    return tree_digest(RUN, MODEL)


def one_line_error(err: str, command: str) -> str:
    err = err.split("\r")[-1].lstrip()  # after the progress bar, if one was drawn
    assert err.startswith(f"study {command}: error: "), err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------------------------------
# Re-checking committed numbers
# ---------------------------------------------------------------------------------------------


def test_verify_rescoring_matches_exactly_and_catches_a_changed_number(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (RUN / "detections.json.gz").is_file()
    assert (RUN / "test_sizes" / "s96.detections.json.gz").is_file()
    assert not (RUN / "detections.json").exists() and not (RUN / "test_sizes_detections").exists()
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 metrics files re-scored" in out and "all identical" in out
    path = RUN / "test_sizes" / "s96.json"
    data = json.loads(path.read_text())
    data["AP50"] = (data["AP50"] or 0.0) + 1e-9
    path.write_text(json.dumps(data))
    assert main(["verify", "fusion/none"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {path}: AP50 committed" in out and "1 of 2" in out


def test_every_result_file_records_its_provenance(study: Path) -> None:
    metrics = json.loads((RUN / "metrics.json").read_text())
    summary = json.loads((RUN / "train_summary.json").read_text())
    for prov in (metrics["meta"]["provenance"], summary["provenance"]):
        assert set(prov) >= {"git_revision", "params_sha256", "torch", "device", "threads"}
        assert len(prov["params_sha256"]) == 16 and prov["threads"] >= 1
    assert metrics["meta"]["protocol"]["max_dets"] is None  # official: no per-image cap


# ---------------------------------------------------------------------------------------------
# Failures leave the earlier run intact
# ---------------------------------------------------------------------------------------------


def test_a_diverging_rerun_keeps_the_previous_run(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_files()
    args = ["train", "fusion/none", "--max-iters", "4", "--set", "train.optimizer=sgd"]
    assert main([*args, "--set", "train.lr=1.0e+30"]) == 2
    err = one_line_error(capsys.readouterr().err, "train")
    assert "training diverged at epoch 1, iteration" in err and "became non-finite" in err
    assert run_files() == before  # live/, summary, metrics and the model all as they were


def test_a_bad_test_size_is_refused_before_any_inference(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_files()
    args = ["evaluate", "fusion/none", "--test-sizes", "--set", "eval.test_sizes=[96,100]"]
    assert main(args) == 2
    one_line_error(capsys.readouterr().err, "evaluate")
    assert run_files() == before


@pytest.mark.parametrize("folder", ["results", "models", "runs"])
def test_a_read_only_output_folder_is_refused_before_training(
    study: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    # Root ignores file modes, so the refusal is simulated at the OS call the check makes.
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if Path(kwargs.get("dir", "")).resolve().is_relative_to(study / folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(kwargs["dir"]))
        return real(*args, **kwargs)

    monkeypatch.setattr("study.utils.tempfile.mkstemp", mkstemp)
    before = run_files()
    assert main(["train", "fusion/none", "--max-iters", "1", "--set", "train.seed=0"]) == 2
    err = one_line_error(capsys.readouterr().err, "train")
    assert f"{folder}/" in err and "cannot write here (Permission denied)" in err
    assert run_files() == before


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (a full disk)."""

    def __init__(self, file, room: int) -> None:  # noqa: ANN001
        self._file, self._room = file, room

    def write(self, data) -> int:  # noqa: ANN001
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._file.write(data)

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._file.close()

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._file, name)


def fill_the_disk(monkeypatch: pytest.MonkeyPatch, file: str) -> None:
    """The disk runs out of space after 100 bytes of the temporary file of ``file`` (a name, or
    folder/name; every result is written through one: study.utils.atomic_path); other writes
    go through."""
    real = open

    def full_open(path, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        handle = real(path, mode, *args, **kwargs)
        path_ = Path(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else Path()
        folder, name = Path(file).parent.name, Path(file).name
        if (
            "w" in mode
            and path_.name.startswith(f".{name}.")
            and path_.name.endswith(".tmp")
            and path_.parent.name == (folder or path_.parent.name)
        ):
            return _FullDisk(handle, 100)
        return handle

    monkeypatch.setattr("builtins.open", full_open)
    monkeypatch.setattr("io.open", full_open)


EVALUATE = ["evaluate", "fusion/none", "--test-sizes"]
TRAIN = ["train", "fusion/none", "--force"]


@pytest.mark.parametrize(
    ("command", "file", "named"),
    [
        (EVALUATE, "detections.json.gz", "results/fusion/none/seed0/.evaluate.tmp/"),
        (EVALUATE, "s96/detections.json.gz", "results/fusion/none/seed0/.evaluate.tmp/s96/"),
        (EVALUATE, "metrics.json", "results/fusion/none/seed0/.evaluate.tmp/metrics.json"),
        (EVALUATE, "curve.json", "results/fusion/none/seed0/.evaluate.tmp/curve.json"),
        (TRAIN, "at0.0000.pt", "models/fusion/none/snapshots/.seed0.new/at0.0000.pt"),
        (TRAIN, "last.pt", "runs/fusion/none/seed0/last.pt"),
        (TRAIN, ".seed0.pt.new", "models/fusion/none/.seed0.pt.new"),
        (TRAIN, ".train_summary.json.new", "results/fusion/none/seed0/.train_summary.json.new"),
    ],
)
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_earlier_outputs(
    study: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    file: str,
    named: str,
) -> None:
    before = run_files()
    with monkeypatch.context() as patched:
        fill_the_disk(patched, file)
        assert main(command) == 2
    err = one_line_error(capsys.readouterr().err, command[0])
    assert named in err and "cannot write (No space left on device)" in err, err
    assert "nothing partial was left" in err
    assert run_files() == before
    assert not [p for p in study.rglob("*.tmp")], "a partial temporary file was left"


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expect"),
    [
        ("train.epochs=two", "train.epochs"),
        ("train.lr=fast", "train.lr"),
        ("eval.img_size=big", "eval.img_size"),
        ("train.batch_size=0", "train.batch_size"),
    ],
)
def test_bad_setting_types_are_one_line_errors(
    study: Path, capsys: pytest.CaptureFixture[str], setting: str, expect: str
) -> None:
    before = run_files()
    assert main(["train", "fusion/none", "--max-iters", "1", "--set", setting]) == 2
    assert expect in one_line_error(capsys.readouterr().err, "train")
    assert run_files() == before


def test_weights_trained_on_other_classes_are_refused(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = Path("data/annotations/instances_val2017.json")
    data = json.loads(ann.read_text())
    data["categories"][0]["name"], data["categories"][1]["name"] = (
        data["categories"][1]["name"],
        data["categories"][0]["name"],
    )
    ann.write_text(json.dumps(data))
    before = run_files()
    assert main(["evaluate", "fusion/none"]) == 2
    err = one_line_error(capsys.readouterr().err, "evaluate")
    assert str(MODEL) in err and "trained on other classes" in err and "class 0" in err
    assert run_files() == before


def test_a_bad_image_in_a_loader_worker_is_one_clear_line(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sorted(Path("data/val2017").iterdir())[0]
    image.write_bytes(b"not an image")
    before = run_files()
    assert main(["evaluate", "fusion/none", "--set", "data.workers=1"]) == 2
    err = one_line_error(capsys.readouterr().err, "evaluate")
    assert str(image) in err and "DataLoader worker" in err
    assert run_files() == before


def test_dropped_ground_truth_is_refused_unless_the_user_says_how_to_score_it(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = Path("data/annotations/instances_val2017.json")
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"][2] = 0.0  # zero width: the loader drops it
    ann.write_text(json.dumps(data))
    before = run_files()
    assert main(["evaluate", "fusion/none"]) == 2
    err = one_line_error(capsys.readouterr().err, "evaluate")
    assert "1 ground-truth boxes are dropped" in err and "eval.dropped_gt" in err
    assert run_files() == before
    # the same rule before any training: a run its evaluation would refuse is not trained
    runs = tree_digest(Path("runs"), Path("models"))
    assert main(["train", "fusion/none", "--force"]) == 2
    assert one_line_error(capsys.readouterr().err, "train") == err.replace("evaluate", "train", 1)
    assert run_files() == before and tree_digest(Path("runs"), Path("models")) == runs
    # a run already trained with this config is left as it is, and says so: nothing to refuse
    assert main(["train", "fusion/none"]) == 0
    assert "already trained with this config" in capsys.readouterr().out
    assert run_files() == before and tree_digest(Path("runs"), Path("models")) == runs
    assert main(["evaluate", "fusion/none", "--set", "eval.dropped_gt=ignore"]) == 0
    meta = json.loads((RUN / "metrics.json").read_text())["meta"]
    assert meta["ground_truth"]["dropped_at_load"] == 1
    assert meta["ground_truth"]["dropped_gt"] == "ignore"


# ---------------------------------------------------------------------------------------------
# The committed results
# ---------------------------------------------------------------------------------------------


def test_committed_results_name_clean_commits_and_carry_their_detections() -> None:
    """Every committed result file records a clean git revision (no `-dirty`), and every
    committed metrics file has its detections beside it, so `study verify` can re-score it."""
    import pandas as pd

    results = REPO / "results"
    metrics = sorted(results.glob("*/*/seed*/metrics.json"))
    metrics += sorted(results.glob("*/*/seed*/test_sizes/s*.json"))
    if not metrics:
        pytest.skip("no committed results in this checkout")
    revisions: dict[str, str] = {}
    for path in metrics:
        meta = json.loads(path.read_text())["meta"]
        revisions[str(path)] = meta["provenance"]["git_revision"]
        assert (path.parent / meta["detections"]).is_file(), path
    for path in sorted(results.glob("*/*/seed*/train_summary.json")):
        revisions[str(path)] = json.loads(path.read_text())["provenance"]["git_revision"]
    for path in sorted(results.glob("*/*/seed*/analysis/summary.json")):
        revisions[str(path)] = json.loads(path.read_text())["meta"]["git_revision"]
    for name in ("bench.csv", "bench_overhead.csv"):
        for row, rev in enumerate(pd.read_csv(results / name)["git_revision"]):
            revisions[f"{name} row {row}"] = rev
    revisions["tables"] = json.loads((results / "tables/provenance.json").read_text())[
        "git_revision"
    ]
    dirty = {k: v for k, v in revisions.items() if v.endswith("-dirty") or v == "unknown"}
    assert not dirty


def test_rerunning_a_finished_training_leaves_every_file_byte_identical(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same `study train` again says the run is complete and how to retrain; snapshots,
    live/, the summary and the weights stay as they were."""
    before = tree_digest(RUN, MODEL, Path("models/fusion/none/snapshots/seed0"))
    assert before and any("at0.0000.pt" in k for k in before)
    assert main(["train", "fusion/none"]) == 0
    out = capsys.readouterr().out
    assert "already trained with this config" in out and "--force" in out
    assert tree_digest(RUN, MODEL, Path("models/fusion/none/snapshots/seed0")) == before
    # another training setting is another run: it trains (and replaces the files)
    assert main(["train", "fusion/none", "--set", "train.lr=5e-4"]) == 0
    assert tree_digest(MODEL) != {k: v for k, v in before.items() if k.startswith(str(MODEL))}
    assert json.loads((RUN / "train_summary.json").read_text())["config"]["train"]["lr"] == 5e-4


def test_a_failed_runs_staging_is_never_swapped_into_a_later_run(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staging folders left by a killed run are removed before the next run writes its own."""
    stale_live = RUN / ".live.new"
    stale_snapshots = Path("models/fusion/none/snapshots/.seed0.new")
    for folder in (stale_live, stale_snapshots):
        folder.mkdir(parents=True)
        (folder / "at0.9000.pt").write_text("from a failed run")
    assert main(["train", "fusion/none", "--force"]) == 0
    assert not stale_live.exists() and not stale_snapshots.exists()
    snapshots = Path("models/fusion/none/snapshots/seed0")
    assert sorted(p.name for p in snapshots.iterdir()) == ["at0.0000.pt", "at0.5000.pt"]
    assert not (RUN / "live" / "at0.9000.pt").exists()


def test_the_weights_and_summary_record_the_hash_of_the_tracked_training_config(
    study: Path,
) -> None:
    """configs/<run>/train.yaml (what DVC tracks) is what the weights were trained with."""
    import torch

    from study.resolved import config_hash

    assert main(["configure"]) == 0
    part = yaml.safe_load(Path("configs/fusion/none/seed0/train.yaml").read_text())
    blob = torch.load(MODEL, map_location="cpu", weights_only=False)
    summary = json.loads((RUN / "train_summary.json").read_text())
    assert blob["config_hash"] == summary["config_hash"] == config_hash(part)
    assert blob["config"] == part


def _run_outputs(name: str) -> dict[str, object]:
    """What a run delivers, minus wall-clock figures: weights and snapshots (tensor by tensor),
    live/ (every logged value per step) and the summary's history."""
    import torch

    def tensors(path: Path) -> dict[str, list]:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        return {k: v.tolist() for k, v in blob["model"].items()}

    results, models = Path("results") / name / "seed0", Path("models") / name
    live = results / "live" / "plots" / "metrics" / "train"
    summary = json.loads((results / "train_summary.json").read_text())
    return {
        "weights": tensors(models / "seed0.pt"),
        "snapshots": {p.name: tensors(p) for p in sorted((models / "snapshots/seed0").iterdir())},
        "live": {
            p.name: p.read_text()
            for p in sorted(live.glob("*.tsv"))
            if p.name != "images_per_s.tsv"
        },
        "live_steps": json.loads((results / "live" / "metrics.json").read_text())["step"],
        "history": [
            {k: v for k, v in h.items() if k != "images_per_s"} for h in summary["history"]
        ],
        "iterations": summary["iterations"],
    }


@pytest.mark.parametrize(
    ("stop", "code"),
    [(KeyboardInterrupt, 130), (StudyError, 2)],
    ids=["ctrl-c", "an error"],
)
def test_an_interrupted_run_resumes_to_what_an_uninterrupted_run_delivers(
    study: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stop: type[BaseException],
    code: int,
) -> None:
    """Ctrl-C (or an error, a full disk say) in the middle of an epoch, then the same command:
    weights, snapshots (the one taken before the checkpoint included), every logged step of
    live/ and the summary's history per epoch equal those of a run that was never interrupted
    (3 epochs of 2 iterations, stopped before iteration 4; the last checkpoint is at
    iteration 2)."""
    from study.engine.trainer import Trainer

    args = ["train", "fusion/none", "--set", "train.epochs=3", "--set", "train.log_every=1"]
    assert main([*args, "--set", "name=whole"]) == 0
    real_step = Trainer.step

    def interrupted(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if self.global_iter == 3:
            raise stop("stopped at iteration 4")
        return real_step(self, *a, **k)

    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "step", interrupted)
        assert main([*args, "--set", "name=cut"]) == code
    assert ("interrupted" if code == 130 else "stopped at iteration 4") in capsys.readouterr().err
    assert Path("runs/cut/seed0/last.pt").is_file()
    assert main([*args, "--set", "name=cut"]) == 0
    resumed = json.loads(Path("results/cut/seed0/train_summary.json").read_text())
    assert resumed["start_epoch"] == 1  # resumed from the checkpoint, not started over
    whole, cut = _run_outputs("whole"), _run_outputs("cut")
    assert whole["iterations"] == 6 and [h["epoch"] for h in cut["history"]] == [1, 2, 3]
    assert cut["live_steps"] == whole["live_steps"] == 5  # steps 0..5, one per iteration
    assert cut == whole
