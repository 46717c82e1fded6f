"""Schedules that depend on the epoch/iteration: learning rate, input size, DropBlock."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from study.choices import LR_SCHEDULES
from study.errors import ConfigError


def lr_at(
    sched: Mapping[str, Any], base_lr: float, epochs: int, epoch: int, it: int, iters_per_epoch: int
) -> float:
    """Learning rate at iteration ``it`` (0-based, within the epoch) of ``epoch`` (0-based).

    - ``official``: burn-in ``base * progress**warmup_power`` over ``warmup_epochs``, flat until
      ``flat_until_epoch``, cosine (one value per epoch, as the official code) down to ``min_lr``
      at ``cosine_end_epoch``, then fixed at ``min_lr``.
    - ``paper``: linear warm-up over ``warmup_epochs``, then cosine per iteration from ``base`` to
      ``min_lr`` at the end of training.
    - ``step``: the official non-cosine schedule: burn-in, then x0.1 at each epoch in ``steps``
      (fractional epochs allowed: ``steps: [6.8]`` decays 80 % into epoch 7).
    """
    name = sched["name"]
    warm = float(sched["warmup_epochs"])
    min_lr = float(sched["min_lr"])
    progress = epoch + it / max(1, iters_per_epoch)  # epochs done, fractional
    if name not in LR_SCHEDULES:
        raise ConfigError(
            f"train.lr_schedule.name: unknown {name!r}; valid: {', '.join(LR_SCHEDULES)}"
        )
    if progress < warm:
        power = 1.0 if name == "paper" else float(sched["warmup_power"])
        return base_lr * (progress / warm) ** power
    if name == "step":
        return base_lr * 0.1 ** sum(progress >= float(s) for s in sched["steps"])
    if name == "paper":
        t = min(1.0, (progress - warm) / max(1e-9, epochs - warm))
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))
    flat, end = int(sched["flat_until_epoch"]), int(sched["cosine_end_epoch"])
    if epoch <= flat:
        return base_lr
    if epoch > end:
        return min_lr
    t = (epoch - flat) / max(1, end - flat)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))


def multiscale_sizes(ms: Mapping[str, Any]) -> list[int]:
    sizes = list(range(int(ms["min_size"]), int(ms["max_size"]) + 1, int(ms["step"])))
    if not sizes or any(s % 32 for s in sizes):
        raise ConfigError(f"train.multiscale: sizes {sizes} must be non-empty multiples of 32")
    return sizes


def input_size_at(
    ms: Mapping[str, Any], img_size: int, epochs: int, epoch: int, global_iter: int, seed: int
) -> int:
    """Square training size for this iteration; the same on every process (seeded by the step).

    A new size is drawn every ``every`` iterations (official: 32 * randint(10, 19) = 320..608);
    the last ``fixed_last_epochs`` train at ``max_size``.
    """
    if not ms["enabled"]:
        return img_size
    if epoch >= epochs - int(ms["fixed_last_epochs"]):
        return int(ms["max_size"])
    block = global_iter // int(ms["every"])
    if block == 0:
        return int(ms["max_size"])
    return random.Random(seed * 1_000_003 + block).choice(multiscale_sizes(ms))


def mixup_active(mix: Mapping[str, Any], epochs: int, epoch: int) -> bool:
    """Mixup is on until the last ``off_last_epochs`` epochs (official: off after 270 of 300)."""
    return bool(mix["enabled"]) and epoch < epochs - int(mix["off_last_epochs"])


def dropblock_at(db: Mapping[str, Any], epoch: int) -> tuple[Sequence[int], float] | None:
    """(block sizes per level, keep_prob) in force at ``epoch``, or None while DropBlock is off."""
    if not db["enabled"]:
        return None
    schedule = {int(e): sizes for e, sizes in db["schedule"].items()}
    started = [e for e in schedule if e <= epoch]
    if not started:
        return None
    return schedule[max(started)], float(db["keep_prob"])
