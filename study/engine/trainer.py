"""The training loop: seeded, resumable, single-process or DistributedDataParallel, AMP on CUDA.

Every switch of the paper's bag of tricks comes from the experiment config (experiments/*.yaml);
this loop only applies them. Checkpoints are written atomically at epoch ends, so a run killed at
any moment resumes from the last one when the same command runs again.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from study.data import CocoDetection, MixupDataset, build_train_transforms, collate
from study.engine import schedule
from study.engine.distributed import DistInfo, all_reduce_mean, init_distributed
from study.engine.ema import ModelEMA
from study.engine.loss import build_criterion
from study.errors import StudyError, TrainingDiverged
from study.models.pretrained import load_backbone
from study.models.weights import save_weights
from study.models.zoo import build_model_from_config
from study.resolved import config_hash, training_config
from study.runs import snapshot_name
from study.utils import device_description, pick_device, seed_everything, torch_save

log = logging.getLogger(__name__)
LOSS_TERMS = ("anchor", "iou", "l1", "obj", "cls")


def init_official_(model: nn.Module) -> None:
    """The official initialisation: Kaiming-normal (a=0.1, fan_in) convs, zero biases, unit BN."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_objectness_prior_(model: nn.Module, prior: float) -> None:
    """Set every head's objectness bias to logit(prior) (RetinaNet/YOLOX-style focal prior).

    Not in the official code (zero biases); the CPU profiles use it so that the few hundred
    iterations they can afford are not spent pushing ~10^4 negatives per image down from 0.5.
    """
    bias_value = -math.log((1.0 - prior) / prior)
    for head in model.heads:
        conv = head.conv
        with torch.no_grad():
            conv.bias.view(-1, 5 + head.num_classes)[:, 4].fill_(bias_value)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def resize_batch(images: torch.Tensor, targets: list[dict], size: int) -> tuple[torch.Tensor, list]:
    """Multi-scale training: resize the batch to ``size`` and scale its boxes (YOLOX-style)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images, targets
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    scale = torch.tensor([size / w, size / h, size / w, size / h])
    return images, [{**t, "boxes": t["boxes"] * scale.to(t["boxes"])} for t in targets]


def sync_batchnorm(model: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """Synchronized BN (bag of freebies) under DDP: ``torch.nn.SyncBatchNorm`` on CUDA.

    SyncBatchNorm has no CPU kernel, so CPU (gloo) runs keep per-process BN and say so.
    """
    if enabled and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if enabled:
        log.warning("sync_bn: SyncBatchNorm needs CUDA; per-process BN on %s", device.type)
    return model


OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(model: nn.Module, tc: dict[str, Any]) -> torch.optim.Optimizer:
    """``train.optimizer``: ``sgd`` (official: momentum SGD) or ``adamw`` (decoupled decay,
    ``momentum`` as beta1, beta2 0.999).

    Weight decay applies to convolution weights only, not to BatchNorm parameters and biases,
    as the official code intends ("set weight decay only on conv.weight").
    The backbone's groups learn at ``train.backbone_lr`` x the rate (the step sets each group's
    rate from its ``lr_scale``); 0 leaves the backbone out (frozen).
    """
    name = tc["optimizer"]
    scale = float(tc.get("backbone_lr", 1.0))
    backbone = {id(p) for p in model.backbone.parameters()} if scale != 1.0 else set()
    groups = []
    for lr_scale, params in (
        (1.0, [p for p in model.parameters() if id(p) not in backbone]),
        (scale, [p for p in model.parameters() if id(p) in backbone] if scale > 0 else []),
    ):
        groups += [
            {
                "params": [p for p in params if p.ndim > 1],
                "weight_decay": float(tc["weight_decay"]),
            },
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        for group in groups[-2:]:
            group["lr_scale"] = lr_scale
    groups = [g for g in groups if g["params"]]
    lr, momentum = float(tc["lr"]), float(tc["momentum"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), foreach=True)
    raise StudyError(f"train.optimizer: unknown {name!r}; valid: {', '.join(OPTIMIZERS)}")


class Trainer:
    """Trains one experiment (its AP is measured by the evaluate stage, on the weights and the
    snapshots it delivers, never inside the training stage)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        run_dir: Path,
        live_dir: Path | None = None,
        max_iters: int | None = None,
        snapshot_dir: Path | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        """``resume``: the state to continue from (:func:`read_resume_state` of the run's
        ``last.pt``, read by the caller); None starts afresh."""
        self.cfg, self.tc = cfg, cfg["train"]
        self.resume = resume
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.run_dir, self.live_dir = Path(run_dir), live_dir
        self.max_iters = max_iters
        self.device = pick_device(self.tc["device"])
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        seed_everything(self.tc["seed"])
        if self.tc["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
        dc = cfg["data"]
        self.dataset = CocoDetection(
            dc["root"],
            dc["train_split"],
            max_images=dc["max_images"],
            cache_images=bool(dc["cache_images"]),
        )
        self.dataset.require_boxes("train on")
        self.train_set = MixupDataset(
            self.dataset,
            alpha=self.tc["mixup"]["alpha"],
            transforms=build_train_transforms(self.tc["augment"], self.tc["img_size"]),
        )
        self.model = build_model_from_config(cfg, self.dataset.num_classes)
        init_official_(self.model)
        if cfg["model"]["backbone_weights"]:
            load_backbone(self.model, cfg["model"]["backbone_weights"], cfg["model"]["name"])
        self.frozen_backbone = float(self.tc["backbone_lr"]) == 0
        if self.frozen_backbone:  # no gradient, and BatchNorm keeps the pretrained statistics
            self.model.backbone.requires_grad_(False)
        if self.tc["objectness_prior"]:
            init_objectness_prior_(self.model, float(self.tc["objectness_prior"]))
        self.model.to(self.device)
        cl = self.tc["channels_last"]
        self.channels_last = cl is True or (cl == "auto" and self.device.type == "cuda")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        ema = self.tc["ema"]
        self.ema = ModelEMA(self.model, ema["decay"], ema["ramp"]) if ema["enabled"] else None
        self.net: nn.Module = self.model
        if self.dist.enabled:
            self.net = sync_batchnorm(self.net, self.tc["sync_bn"], self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.criterion = build_criterion(self.model, self.tc)
        self.optimizer = build_optimizer(self.model, self.tc)
        self.amp = amp_dtype(self.tc["amp"], self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.per_rank_batch = max(1, self.tc["batch_size"] // self.dist.world_size)
        self.start_epoch, self.global_iter = 0, 0
        self.checkpoint_epoch: int | None = None  # the epoch of this run's last checkpoint
        # What the run has logged so far (kept in the checkpoint, so a resumed run's summary and
        # live/ hold every epoch and step, as an uninterrupted run's do): one record per epoch,
        # and one row of dvclive metrics per logged step.
        self.history: list[dict[str, Any]] = []
        self.logged: list[dict[str, float]] = []
        self.hash = config_hash(training_config(cfg))

    @property
    def final_model(self) -> nn.Module:
        """The weights a run delivers: the moving average when ``train.ema`` is on."""
        return self.ema.module if self.ema else self.model

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "last.pt"

    def save_checkpoint(self, epoch: int) -> None:
        if not self.dist.is_main:
            return
        state = {
            "epoch": epoch,
            "global_iter": self.global_iter,
            "config_hash": self.hash,
            "config": self.cfg,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "log": {"history": self.history, "live": self.logged},
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        torch_save(state, self.ckpt_path)
        self.checkpoint_epoch = epoch

    def snapshot_iterations(self, iters_per_epoch: int) -> dict[int, float]:
        """``train.snapshots`` (fractions of the run) -> {optimizer steps done: fraction}.

        Each snapshot is taken at the step nearest its fraction of the run's iterations, inside
        an epoch if need be (so that 0.75 of a 5-epoch run is 75 %, not the end of epoch 4);
        0 is the initial weights (before the first step); the run's end is its model file.
        """
        total, out = int(self.tc["epochs"]) * iters_per_epoch, {}
        for frac in self.tc["snapshots"] or []:
            if not isinstance(frac, (int, float)) or not 0.0 <= float(frac) < 1.0:
                raise StudyError(
                    f"train.snapshots: {frac!r} is not a fraction of the run in [0, 1)"
                )
            out[round(float(frac) * total)] = float(frac)
        return out

    def save_snapshot(self, fraction: float, iters_per_epoch: int) -> None:
        """The delivered weights after ``self.global_iter`` steps (``fraction`` of the run),
        as ``at<fraction>.pt`` (:func:`study.runs.snapshot_name`), for the learning curve
        and the analysis stage."""
        if self.snapshot_dir is None or not self.dist.is_main:
            return
        self.save_weights(
            self.snapshot_dir / snapshot_name(fraction),
            {
                "snapshot": {
                    "epoch": self.global_iter / iters_per_epoch,
                    "iteration": self.global_iter,
                    "fraction": fraction,
                }
            },
        )

    def save_weights(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """The delivered weights with the run's training config and its hash (what
        ``configs/<experiment>/seed<k>/train.yaml`` holds) and the dataset's classes."""
        save_weights(
            self.final_model,
            self.dataset,
            training_config(self.cfg),
            path,
            extra={"name": self.cfg["name"], "config_hash": self.hash, **(extra or {})},
        )

    def try_resume(self, state: dict[str, Any] | None) -> bool:
        """Continue from ``state`` (a resume checkpoint, :func:`read_resume_state`); False (a
        fresh start) when there is none or it belongs to another training config."""
        if state is None:
            return False
        if state.get("config_hash") != self.hash:
            log.warning("%s: written by a different config; starting afresh", self.ckpt_path)
            return False
        self.model.load_state_dict(state["model"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch, self.global_iter = state["epoch"] + 1, state["global_iter"]
        self.checkpoint_epoch = state["epoch"]
        self.history = list(state["log"]["history"])
        self.logged = list(state["log"]["live"])
        log.info("resumed from %s at epoch %d", self.ckpt_path, self.start_epoch)
        return True

    # -- one epoch -------------------------------------------------------------------------
    def loader(self, epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(self.tc["seed"] * 10_007 + epoch)
        if self.dist.enabled:
            sampler = DistributedSampler(self.train_set, seed=self.tc["seed"], drop_last=True)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.train_set, generator=gen)
        workers = self.cfg["data"]["workers"]
        return DataLoader(
            self.train_set,
            batch_size=self.per_rank_batch,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=gen,
            persistent_workers=False,
        )

    def apply_epoch_schedules(self, epoch: int) -> None:
        epochs = self.tc["epochs"]
        self.train_set.set_enabled(schedule.mixup_active(self.tc["mixup"], epochs, epoch))
        db = schedule.dropblock_at(self.tc["dropblock"], epoch)
        for level, layer in enumerate(self.model.dropblocks()):
            layer.reset(db[0][level], db[1]) if db else layer.reset(1, 1.0)

    def step(
        self, images: torch.Tensor, targets: list[dict], epoch: int, it: int, iters: int
    ) -> dict[str, float]:
        tc = self.tc
        lr = schedule.lr_at(tc["lr_schedule"], tc["lr"], tc["epochs"], epoch, it, iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        size = schedule.input_size_at(
            tc["multiscale"], tc["img_size"], tc["epochs"], epoch, self.global_iter, tc["seed"]
        )
        images, targets = resize_batch(images, targets, size)
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = [
            {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets
        ]
        with torch.autocast(
            self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None
        ):
            outputs = self.net(images)
        losses = self.criterion([o._replace(raw=o.raw.float()) for o in outputs], targets, size)
        bad = [k for k, v in losses.items() if not torch.isfinite(v)]
        if bad:
            self.diverged(epoch, f"the loss (term(s): {', '.join(bad)}) became non-finite")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if tc["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        else:
            grad_norm = nn.utils.get_total_norm([p.grad for p in params])
        # fp16: the scaler skips steps with inf/NaN gradients (and lowers its scale) by design.
        if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
            self.diverged(epoch, "the gradients became non-finite")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # NaN weights with a still-finite loss would reach the next forward (torchvision's CPU
        # deformable convolution crashes the process on NaN offsets): stop here instead.
        if not torch.isfinite(nn.utils.get_total_norm(list(self.model.parameters()))):
            self.diverged(epoch, "the weights became non-finite after the update")
        if self.ema:
            self.ema.update(self.model)
        self.global_iter += 1
        # One collective for all terms (not one per term) in the hot loop.
        values = all_reduce_mean(torch.stack([v.detach() for v in losses.values()]), self.dist)
        reduced = dict(zip(losses, values.tolist(), strict=True))
        return {**reduced, "lr": lr, "size": size}

    def diverged(self, epoch: int, what: str) -> None:
        """Stop the run: ``what`` went non-finite at the current iteration. Nothing is saved, so
        the last checkpoint (written at an epoch end, before this) stays the last good one."""
        kept = (
            f"the last good checkpoint {self.ckpt_path} (epoch {self.checkpoint_epoch + 1}) is kept"
            if self.checkpoint_epoch is not None
            else "no checkpoint of this run had been written yet"
        )
        raise TrainingDiverged(
            f"{self.cfg['name']} seed {self.tc['seed']}: training diverged at epoch {epoch + 1}, "
            f"iteration {self.global_iter + 1}: {what} (lr {self.optimizer.param_groups[0]['lr']:g}"
            f"); {kept} and no weights were saved. Lower train.lr or set train.grad_clip."
        )

    # -- the whole run ---------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        self.try_resume(self.resume)
        live = self._open_live()
        epochs, t0, images_seen = self.tc["epochs"], time.time(), 0
        last: dict[str, float] = {}
        snapshots: dict[int, float] | None = None
        for epoch in range(self.start_epoch, epochs):
            seed_everything(self.tc["seed"] * 7919 + epoch + 1000 * self.dist.rank)
            self.apply_epoch_schedules(epoch)
            self.net.train()
            if self.frozen_backbone:
                self.model.backbone.eval()
            loader = self.loader(epoch)
            iters, it = len(loader), -1
            if iters == 0:
                raise StudyError(
                    f"{self.dataset.ann_file}: {len(self.train_set)} training images, "
                    f"fewer than one batch of {self.per_rank_batch} per process"
                )
            if snapshots is None:  # every epoch has the same number of steps
                snapshots = self.snapshot_iterations(iters)
                if self.global_iter == 0 and 0 in snapshots:
                    self.save_snapshot(snapshots[0], iters)
            bar = tqdm(
                loader,
                desc=f"{self.cfg['name']} {epoch + 1}/{epochs}",
                disable=not self.dist.is_main,
                leave=False,
                dynamic_ncols=True,
            )
            t_epoch, n_epoch = time.time(), 0
            for it, (images, targets) in enumerate(bar):
                last = self.step(images, targets, epoch, it, iters)
                if self.global_iter in snapshots:
                    self.save_snapshot(snapshots[self.global_iter], iters)
                n_epoch += images.shape[0] * self.dist.world_size
                ips = n_epoch / max(1e-9, time.time() - t_epoch)
                bar.set_postfix(
                    {k: f"{last[k]:.2f}" for k in ("total", *LOSS_TERMS)}
                    | {"img/s": f"{ips:.1f}", "size": last["size"]}
                )
                if live and self.global_iter % self.tc["log_every"] == 0:
                    row = {f"train/{k}": last[k] for k in ("total", *LOSS_TERMS, "lr")}
                    row = {**row, "train/images_per_s": ips}
                    _live_step(live, row)
                    self.logged.append(row)
                if self.max_iters is not None and self.global_iter >= self.max_iters:
                    break
            images_seen += n_epoch
            record = {
                "epoch": epoch + 1,
                **{k: last.get(k, math.nan) for k in ("total", *LOSS_TERMS)},
                "images_per_s": n_epoch / max(1e-9, time.time() - t_epoch),
            }
            self.history.append(record)
            finished = it + 1 == iters
            if finished and ((epoch + 1) % self.tc["checkpoint_every"] == 0 or epoch + 1 == epochs):
                self.save_checkpoint(epoch)
            if self.max_iters is not None and self.global_iter >= self.max_iters:
                break
        if live:
            live.end()
        wall = time.time() - t0
        return {
            "epochs": epochs,
            "start_epoch": self.start_epoch,
            "iterations": self.global_iter,
            "wall_seconds": round(wall, 1),
            "images_per_s": images_seen / max(1e-9, wall),
            "final_losses": {k: last.get(k) for k in ("total", *LOSS_TERMS)},
            "history": self.history,
            "device": device_description(self.device),
            "world_size": self.dist.world_size,
            "config_hash": self.hash,
        }

    def _open_live(self):  # noqa: ANN202
        if self.live_dir is None or not self.dist.is_main:
            return None
        try:
            from dvclive import Live
        except ImportError:
            log.warning("dvclive is not installed: training metrics are not logged")
            return None
        # dvcyaml=False: the root dvc.yaml declares these plots; dvclive must not rewrite it.
        # A resumed run starts live/ afresh and writes again the rows its checkpoint kept: the
        # steps logged after that checkpoint by the interrupted run are not the run's any more.
        live = Live(
            dir=str(self.live_dir), dvcyaml=False, save_dvc_exp=False, resume=False, report=None
        )
        for row in self.logged:
            _live_step(live, row)
        return live


def _live_step(live: Any, row: dict[str, float]) -> None:
    """One dvclive step of metrics."""
    for name, value in row.items():
        live.log_metric(name, value)
    live.next_step()


# What a resume checkpoint (runs/<experiment>/seed<k>/last.pt) holds; try_resume reads them all.
RESUME_KEYS = ("config_hash", "model", "optimizer", "epoch", "global_iter", "rng", "log")


def read_resume_state(path: Path) -> dict[str, Any] | None:
    """The resume checkpoint at ``path`` (None when there is none). One that cannot be read is
    one clear error naming it and how to start over, raised before anything of the run is
    touched (its earlier outputs stay as they are)."""
    if not path.is_file():
        return None
    start_over = "delete it, or rerun with --force, to start this run over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated, empty, random bytes, another format
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudyError(
            f"{path}: not a readable resume checkpoint ({type(exc).__name__}: {detail[:160]}); "
            f"{start_over}"
        ) from None
    if not isinstance(state, dict):
        what = f"a {type(state).__name__}, not a dict"
    else:
        missing = [k for k in RESUME_KEYS if k not in state]
        what = f"no {', '.join(missing)}" if missing else None
    if what is not None:
        raise StudyError(f"{path}: not a resume checkpoint of `study train` ({what}); {start_over}")
    return state
