"""The training loop (study/engine/trainer.py) on a tiny synthetic dataset, CPU only.

Two-iteration runs of the real experiment configs at width 0.125, depth 0.34, 96-128 px: the run
itself, resume after an interruption (bit-identical to an uninterrupted run), divergence, the
epoch schedules, and a two-process DistributedDataParallel run through ``torchrun``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from study.config import deep_merge, load_experiment
from study.data.synthetic import MIN_IMG_SIZE, class_names, generate
from study.engine.trainer import LOSS_TERMS, Trainer, read_resume_state
from study.errors import StudyError, TrainingDiverged
from study.resolved import config_hash as _hash
from study.resolved import training_config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
RUN = Path("table1", "baseline", "seed0")  # runs/ and results/ folder of the CLI runs below


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train / 4 val synthetic images (COCO layout) at the generator's minimum size."""
    root = tmp_path_factory.mktemp("tiny-coco")
    generate(root, num_train=8, num_val=4, img_size=MIN_IMG_SIZE, seed=0)
    return root


def config_hash(cfg: dict) -> str:
    """The hash the trainer records: of the config's training part only."""
    return _hash(training_config(cfg))


def tiny_cfg(root: Path, experiment: str = "table1/baseline", **train: Any) -> dict[str, Any]:
    overrides = {
        "data": {"root": str(root), "workers": 0},
        "model": {"width": 0.125, "depth": 0.34},
        "train": deep_merge(
            {
                "epochs": 1,
                "batch_size": 4,
                "img_size": 128,
                "device": "cpu",
                "multiscale": {"min_size": 96, "max_size": 128, "every": 1},
            },
            train,
        ),
        "eval": {"img_size": 128},
    }
    return load_experiment(
        EXPERIMENTS / f"{experiment}.yaml",
        profile=None,
        params_path=None,
        overrides=overrides,
        name=experiment,
    )


def spawn(cmd: list[str], cwd: Path, env: dict[str, str], out: int) -> subprocess.Popen:
    """``cmd`` in its own process group (so that a hung run is killed with its workers)."""
    text = out == subprocess.PIPE
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=out, stderr=out, text=text, start_new_session=True
    )


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# A two-iteration run
# ---------------------------------------------------------------------------------------------


def test_two_iteration_training_run(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, lr_schedule={"warmup_epochs": 0})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", live_dir=None, max_iters=2)
    assert trainer.dist.world_size == 1 and trainer.per_rank_batch == 4
    assert trainer.model.num_classes == len(class_names())  # the synthetic benchmark's classes
    before = state_copy(trainer.model)
    summary = trainer.fit()

    assert summary["iterations"] == 2 and summary["start_epoch"] == 0 and summary["epochs"] == 1
    assert summary["world_size"] == 1 and summary["config_hash"] == config_hash(cfg)
    losses = summary["final_losses"]
    assert set(losses) == {"total", *LOSS_TERMS}
    assert all(math.isfinite(v) and v >= 0 for v in losses.values())
    assert losses["total"] == pytest.approx(sum(losses[k] for k in LOSS_TERMS), rel=1e-5)
    assert losses["obj"] > 0 and losses["cls"] > 0 and losses["iou"] > 0  # iou_loss: iou
    assert len(summary["history"]) == 1 and summary["history"][0]["epoch"] == 1

    ckpt = tmp_path / "run" / "last.pt"
    assert ckpt.is_file()
    assert not [p for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_iter"] == 2
    assert state["config_hash"] == config_hash(cfg)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg["train"]["lr"])

    after = trainer.model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    weights = [k for k, _ in trainer.model.named_parameters()]
    assert len([k for k in weights if k in changed]) > 0.9 * len(weights)
    assert all(torch.equal(state["model"][k], after[k]) for k in after)


def test_snapshots_keep_the_initial_and_mid_run_weights(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, epochs=2, snapshots=[0.0, 0.5])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", snapshot_dir=tmp_path / "snap")
    before = state_copy(trainer.model)
    summary = trainer.fit()
    assert summary["iterations"] == 4  # 8 images, batch 4, 2 epochs
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == ["at0.0000.pt", "at0.5000.pt"]
    init = torch.load(tmp_path / "snap" / "at0.0000.pt", map_location="cpu", weights_only=False)
    mid = torch.load(tmp_path / "snap" / "at0.5000.pt", map_location="cpu", weights_only=False)
    assert init["snapshot"] == {"epoch": 0.0, "iteration": 0, "fraction": 0.0}
    assert mid["snapshot"] == {"epoch": 1.0, "iteration": 2, "fraction": 0.5}
    assert init["spec"] == trainer.model.spec
    assert init["class_names"] == trainer.dataset.class_names
    assert all(torch.equal(init["model"][k], v) for k, v in before.items())
    final = trainer.model.state_dict()
    for other in (before, final):  # the mid-run weights are neither the start nor the end
        assert any(not torch.equal(mid["model"][k], other[k]) for k in other)
    # Snapshots are weights the training stage delivers: a change of them is a change of the
    # tracked training config (configs/<run>/train.yaml), so DVC re-runs the training.
    assert config_hash(cfg) != config_hash(tiny_cfg(data_root, epochs=2, snapshots=[]))


def test_snapshots_land_at_their_fraction_of_the_iterations_inside_an_epoch(
    data_root: Path, tmp_path: Path
) -> None:
    # 2 epochs of 2 steps: 25 % and 75 % of the run are steps 1 and 3, half-way into an epoch
    cfg = tiny_cfg(data_root, epochs=2, snapshots=[0.25, 0.75])
    Trainer(cfg, run_dir=tmp_path / "run", snapshot_dir=tmp_path / "snap").fit()
    blobs = {
        p.name: torch.load(p, map_location="cpu", weights_only=False)["snapshot"]
        for p in (tmp_path / "snap").iterdir()
    }
    assert blobs == {
        "at0.2500.pt": {"epoch": 0.5, "iteration": 1, "fraction": 0.25},
        "at0.7500.pt": {"epoch": 1.5, "iteration": 3, "fraction": 0.75},
    }


def test_a_pretrained_backbone_carries_over_alone_and_can_be_frozen(
    data_root: Path, tmp_path: Path
) -> None:
    """The backbone file holds the backbone's tensors only; a run that loads it starts with
    those tensors and its own freshly initialised neck and head; backbone_lr 0 keeps them (and
    their BatchNorm statistics) fixed while the rest trains; a file of another width is
    refused, naming the file and a tensor."""
    from study.errors import CheckpointError
    from study.models.pretrained import load_backbone, save_backbone

    source = Trainer(tiny_cfg(data_root, experiment="fusion/none"), run_dir=tmp_path / "a")
    source.fit()
    path = tmp_path / "backbone.pt"
    save_backbone(source.model, path)
    blob = torch.load(path, map_location="cpu", weights_only=False)
    assert set(blob["backbone"]) == set(source.model.backbone.state_dict())
    cfg = tiny_cfg(data_root, experiment="fusion/asff", seed=3, backbone_lr=0.0)
    cfg["model"]["backbone_weights"] = str(path)
    run = Trainer(cfg, run_dir=tmp_path / "b", max_iters=2)
    loaded = state_copy(run.model.backbone)
    assert all(torch.equal(loaded[k], v) for k, v in blob["backbone"].items())
    head_before = state_copy(run.model)
    run.fit()
    assert all(torch.equal(run.model.backbone.state_dict()[k], v) for k, v in loaded.items())
    changed = [k for k, v in run.model.state_dict().items() if not torch.equal(head_before[k], v)]
    assert changed and not any(k.startswith("backbone.") for k in changed)
    # a lower rate: the backbone's parameter groups carry the scale
    cfg_low = tiny_cfg(data_root, experiment="fusion/asff", backbone_lr=0.1)
    low = Trainer(cfg_low, run_dir=tmp_path / "c")
    assert sorted({g["lr_scale"] for g in low.optimizer.param_groups}) == [0.1, 1.0]
    wide = tiny_cfg(data_root, experiment="fusion/none")
    wide["model"]["width"] = 0.25
    other = Trainer(wide, run_dir=tmp_path / "d").model
    with pytest.raises(CheckpointError, match=r"backbone.pt: the backbone does not fit .*shape"):
        load_backbone(other, path, "yolov3-spp")


@pytest.mark.parametrize("bad", [1.0, -0.1, "half"])
def test_a_snapshot_outside_the_run_is_an_error(data_root: Path, tmp_path: Path, bad) -> None:
    cfg = tiny_cfg(data_root, snapshots=[bad])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", snapshot_dir=tmp_path / "snap")
    with pytest.raises(StudyError, match="train.snapshots"):
        trainer.fit()
    assert not (tmp_path / "snap").exists()


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------

RESUME_TRAIN = {
    "epochs": 2,
    # lr changes every iteration; mixup on in epoch 0 only; multi-scale in both epochs;
    # DropBlock from epoch 1: everything that resume must restore or recompute.
    "lr_schedule": {"warmup_epochs": 1, "flat_until_epoch": 0, "cosine_end_epoch": 2},
    "mixup": {"off_last_epochs": 1},
    "multiscale": {"fixed_last_epochs": 0},
    "dropblock": {"enabled": True, "keep_prob": 0.9, "schedule": {1: [1, 3, 3]}},
}


def test_resume_equals_an_uninterrupted_run(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, experiment="table1/asff", **RESUME_TRAIN)

    full = Trainer(cfg, run_dir=tmp_path / "full")
    full_summary = full.fit()
    assert full_summary["iterations"] == 4  # 8 images, batch 4, 2 epochs
    assert {h["epoch"] for h in full_summary["history"]} == {1, 2}

    # Killed after epoch 1 (max_iters stops it once the epoch-end checkpoint is written).
    first = Trainer(cfg, run_dir=tmp_path / "resumed", max_iters=2)
    first_summary = first.fit()
    assert first_summary["iterations"] == 2 and len(first_summary["history"]) == 1
    state = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_iter"] == 2

    state = read_resume_state(tmp_path / "resumed" / "last.pt")
    second = Trainer(cfg, run_dir=tmp_path / "resumed", resume=state)
    second_summary = second.fit()
    assert second_summary["start_epoch"] == 1 and second.start_epoch == 1
    assert second_summary["iterations"] == 4
    assert [h["epoch"] for h in second_summary["history"]] == [1, 2]  # kept in the checkpoint

    a, b = full.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run's: {differ[:5]}"
    assert second_summary["final_losses"] == full_summary["final_losses"]
    opt_a, opt_b = full.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["momentum_buffer"], opt_b[i]["momentum_buffer"]) for i in opt_a)


def test_checkpoint_of_another_config_is_not_resumed(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, experiment="table1/yolov3-original")
    # A stop in the middle of an epoch writes no checkpoint (resuming would skip the rest).
    Trainer(cfg, run_dir=tmp_path / "run", max_iters=1).fit()
    assert not (tmp_path / "run" / "last.pt").exists()
    Trainer(cfg, run_dir=tmp_path / "run", max_iters=2).fit()  # one whole epoch
    other = tiny_cfg(data_root, experiment="table1/yolov3-original", lr=5e-4)
    assert config_hash(other) != config_hash(cfg)
    # logging, checkpoint cadence, device, caching and evaluation settings do not
    assert config_hash(
        tiny_cfg(data_root, experiment="table1/yolov3-original", log_every=3, checkpoint_every=2)
    ) == config_hash(cfg)
    unseen = {"data": {"cache_images": True, "val_split": "x"}, "eval": {"img_size": 64}}
    assert config_hash(deep_merge(cfg, unseen)) == config_hash(cfg)
    trainer = Trainer(other, run_dir=tmp_path / "run", max_iters=1)
    state = read_resume_state(tmp_path / "run" / "last.pt")
    assert trainer.try_resume(state) is False and trainer.start_epoch == 0
    same = Trainer(cfg, run_dir=tmp_path / "run", max_iters=1)
    assert same.try_resume(state) is True and same.start_epoch == 1 and same.global_iter == 2


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------


def test_nan_loss_raises_and_keeps_the_last_checkpoint(data_root: Path, tmp_path: Path) -> None:
    # 4 images, batch 4: one iteration per epoch, so the 2nd iteration comes after the epoch-1
    # checkpoint.
    cfg = tiny_cfg(data_root, experiment="table1/yolov3-original", epochs=3)
    cfg["data"]["max_images"] = 4
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    criterion, calls, seen = trainer.criterion, [], {}
    ckpt = trainer.ckpt_path

    def nan_at_second_call(outputs, targets, size):  # noqa: ANN001, ANN202
        terms = criterion(outputs, targets, size)
        calls.append(size)
        if len(calls) == 2:
            seen["sha"] = sha256(ckpt)
            terms = {**terms, "cls": terms["cls"] * float("nan")}
        return terms

    trainer.criterion = nan_at_second_call
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    msg = str(info.value)
    assert "at epoch 2, iteration 2" in msg  # 1-based, as the progress bar counts
    assert "cls" in msg and "obj" not in msg
    assert str(ckpt) in msg
    assert len(calls) == 2
    assert sha256(ckpt) == seen["sha"]  # the epoch-1 checkpoint is untouched
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_iter"] == 1
    # no optimizer step was taken with the NaN loss
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(state["model"][k], p.detach()) for k, p in params.items())
    assert all(torch.isfinite(p).all() for p in params.values())


def test_inf_in_the_first_iteration_writes_no_checkpoint(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, experiment="table1/yolov3-original")
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    criterion = trainer.criterion

    def inf_obj(outputs, targets, size):  # noqa: ANN001, ANN202
        terms = criterion(outputs, targets, size)
        return {**terms, "obj": terms["obj"] + float("inf"), "total": terms["total"] + float("inf")}

    trainer.criterion = inf_obj
    with pytest.raises(TrainingDiverged, match=r"iteration 1: the loss \(term\(s\): obj, total\)"):
        trainer.fit()
    assert not trainer.ckpt_path.exists()


def _diverge_at_second_iteration(
    data_root: Path, tmp_path: Path, poison: str
) -> tuple[Trainer, Path, str, str]:
    """Train 3 one-iteration epochs; at the second iteration the gradients (``poison="grad"``)
    or the weights after the update (``"weights"``) turn NaN while the loss stays finite."""
    cfg = tiny_cfg(data_root, experiment="table1/baseline", epochs=3)
    cfg["data"]["max_images"] = 4
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    ckpt, step, seen = trainer.ckpt_path, trainer.optimizer.step, {}
    weight = next(trainer.model.parameters())

    def poisoned_step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = step(*args, **kwargs)
        if trainer.global_iter == 1 and poison == "weights":
            seen["sha"] = sha256(ckpt)
            with torch.no_grad():
                weight[0].fill_(float("nan"))
        return out

    def nan_grad(grad: torch.Tensor) -> torch.Tensor:
        if trainer.global_iter == 1:
            seen["sha"] = sha256(ckpt)
            return grad * float("nan")
        return grad

    trainer.optimizer.step = poisoned_step
    if poison == "grad":
        weight.register_hook(nan_grad)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    return trainer, ckpt, seen["sha"], str(info.value)


@pytest.mark.parametrize(
    ("poison", "what"),
    [("grad", "the gradients became non-finite"), ("weights", "the weights became non-finite")],
)
def test_nonfinite_gradients_or_weights_stop_before_the_next_forward(
    data_root: Path, tmp_path: Path, poison: str, what: str
) -> None:
    # The loss is still finite here: only a gradient/weight check catches it, before NaN reaches
    # the next forward (where torchvision's CPU deformable convolution dies with SIGSEGV).
    trainer, ckpt, sha_before, msg = _diverge_at_second_iteration(data_root, tmp_path, poison)
    assert "training diverged at epoch 2, iteration 2" in msg and what in msg
    assert f"the last good checkpoint {ckpt} (epoch 1) is kept" in msg
    assert sha256(ckpt) == sha_before
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_iter"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# ---------------------------------------------------------------------------------------------
# Epoch schedules applied by the trainer
# ---------------------------------------------------------------------------------------------


def test_epoch_schedules_reach_the_model_and_data(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        data_root,
        experiment="table1/asff-star",
        epochs=3,
        mixup={"off_last_epochs": 1},
        dropblock={"keep_prob": 0.8, "schedule": {1: [1, 3, 5], 2: [3, 3, 3]}},
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    layers = trainer.model.dropblocks()
    trainer.apply_epoch_schedules(0)
    assert trainer.train_set.enabled is True
    assert [(d.block_size, d.keep_prob) for d in layers] == [(1, 1.0)] * 3
    trainer.apply_epoch_schedules(1)
    assert trainer.train_set.enabled is True
    assert [(d.block_size, d.keep_prob) for d in layers] == [(1, 0.8), (3, 0.8), (5, 0.8)]
    trainer.apply_epoch_schedules(2)
    assert trainer.train_set.enabled is False
    assert [(d.block_size, d.keep_prob) for d in layers] == [(3, 0.8)] * 3


# ---------------------------------------------------------------------------------------------
# DistributedDataParallel: two CPU processes (gloo) through torchrun and the CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def make_workdir(data_root: Path, work: Path, epochs: int = 1) -> Path:
    """A study folder (experiments/, data/, params.yaml with a tiny profile) for CLI runs."""
    shutil.copytree(EXPERIMENTS, work / "experiments")
    shutil.copytree(data_root, work / "data")
    params = {
        "profile": "tiny",
        "dataset": "data",
        "fusions": [],
        "seeds": [0],
        "table1": ["baseline"],
        "table1_seeds": [0],
        "profiles": {
            "tiny": {
                "data": {"root": "data", "workers": 0},
                "model": {"width": 0.125, "depth": 0.34},
                "train": {
                    "epochs": epochs,
                    "batch_size": 4,
                    "img_size": 128,
                    "device": "cpu",
                    "multiscale": {"min_size": 96, "max_size": 128, "every": 1},
                    "log_every": 1,
                },
                "eval": {"img_size": 128, "batch_size": 4},
            }
        },
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return work


def test_two_process_ddp_run(data_root: Path, tmp_path: Path) -> None:
    work = make_workdir(data_root, tmp_path / "study")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "study",
        "train",
        "table1/baseline",
        "--params",
        "params.yaml",
        "--max-iters",
        "2",
    ]
    # Own process group, so that a hung run is killed with its workers.
    proc = spawn(cmd, work, env, subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{err[-6000:]}")
    assert proc.returncode == 0, out[-3000:] + err[-6000:]

    weights = work / "models" / "table1" / "baseline" / "seed0.pt"
    assert weights.is_file()
    assert (work / "runs" / RUN / "last.pt").is_file()
    summary = json.loads((work / "results" / RUN / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["iterations"] == 2  # 8 images, 2 ranks x 2 images per iteration
    assert summary["config"]["train"]["sync_bn"] is True  # the baseline experiment's setting
    assert all(math.isfinite(v) for v in summary["final_losses"].values())
    assert (work / "results" / RUN / "live" / "metrics.json").is_file()

    from study.models.weights import load_weights

    model, blob = load_weights(weights, torch.device("cpu"))
    assert blob["spec"]["name"] == "baseline" and model.num_classes == len(class_names())
    assert not any(".module." in k or k.startswith("module.") for k in blob["model"])


def test_sync_bn_switch_converts_every_batchnorm() -> None:
    from study.engine.trainer import sync_batchnorm
    from study.models import build_model

    model = build_model("baseline", num_classes=3, width=0.125, depth=0.34)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    cpu = sync_batchnorm(model, True, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in cpu.modules())
    # Conversion itself needs no GPU; only running SyncBatchNorm does.
    converted = sync_batchnorm(model, True, torch.device("cuda"))
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == n_bn > 40
    off = build_model("baseline", num_classes=3, width=0.125, depth=0.34)
    assert sync_batchnorm(off, False, torch.device("cuda")) is off


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_the_same_weights(data_root: Path, tmp_path: Path) -> None:
    """SIGKILL the real CLI after its first checkpoint; the same command then finishes the run
    and its weights equal an uninterrupted run's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "study", "train", "table1/baseline", "--params", "params.yaml"]
    full = make_workdir(data_root, tmp_path / "full", epochs=3)
    subprocess.run(cmd, cwd=full, env=env, check=True, capture_output=True, timeout=300)

    killed = make_workdir(data_root, tmp_path / "killed", epochs=3)
    proc = spawn(cmd, killed, env, subprocess.DEVNULL)
    ckpt = killed / "runs" / RUN / "last.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    weights = Path("models", "table1", "baseline", "seed0.pt")
    assert ckpt.exists() and not (killed / weights).exists(), "killed too late"
    first = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]
    assert first < 2
    rerun = subprocess.run(cmd, cwd=killed, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((killed / "results" / RUN / "train_summary.json").read_text())
    assert summary["start_epoch"] == first + 1

    a = torch.load(full / weights, map_location="cpu", weights_only=False)
    b = torch.load(killed / weights, map_location="cpu", weights_only=False)
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"resumed weights differ: {differ[:5]}"


def test_paper_profile_code_path_on_the_coco_subset(tmp_path: Path) -> None:
    """The `paper` profile's settings (official schedule, mixup, multi-scale, every augmentation,
    SyncBN switch) on real COCO images, with tiny sizes and two iterations."""
    subset = Path(os.environ.get("STUDY_COCO_SUBSET", REPO.parent / "shared/data/coco-subset"))
    if not (subset / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"COCO subset not found at {subset}")
    overrides = {
        "data": {"root": str(subset), "workers": 0, "max_images": 8},
        "model": {"width": 0.125, "depth": 0.34},
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "img_size": 128,
            "device": "cpu",
            "multiscale": {"min_size": 96, "max_size": 128, "every": 1},
        },
    }
    cfg = load_experiment(
        EXPERIMENTS / "table1" / "baseline.yaml",
        profile="paper",
        params_path=REPO / "params.yaml",
        overrides=overrides,
    )
    assert cfg["profile"] == "paper"
    tc = cfg["train"]
    assert tc["mixup"]["enabled"] and tc["label_smoothing"] and tc["sync_bn"]
    assert tc["lr_schedule"]["name"] == "official" and tc["lr_schedule"]["warmup_epochs"] == 5
    assert all(tc["augment"][k] for k in ("photometric", "expand", "crop", "flip", "affine"))
    assert tc["objectness_prior"] is None and tc["grad_clip"] == 0  # official initialisation
    trainer = Trainer(cfg, run_dir=tmp_path / "run", max_iters=2)
    assert trainer.model.num_classes == 80
    summary = trainer.fit()
    assert summary["iterations"] == 2
    assert all(math.isfinite(v) for v in summary["final_losses"].values())
