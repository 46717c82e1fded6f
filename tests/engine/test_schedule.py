"""Schedules by epoch/iteration (study/engine/schedule.py): lr, input size, mixup, DropBlock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from study.config import load_experiment
from study.engine.schedule import (
    dropblock_at,
    input_size_at,
    lr_at,
    mixup_active,
    multiscale_sizes,
)
from study.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE = 1e-3
MIN = 1e-5
ITERS = 100  # iterations per epoch
EPOCHS = 300

OFFICIAL = {
    "name": "official",
    "warmup_epochs": 5,
    "warmup_power": 4,
    "flat_until_epoch": 20,
    "cosine_end_epoch": 270,
    "min_lr": MIN,
    "steps": [180, 240],
}
PAPER = {**OFFICIAL, "name": "paper", "warmup_epochs": 4}
STEP = {**OFFICIAL, "name": "step"}
MS = {
    "enabled": True,
    "min_size": 320,
    "max_size": 608,
    "step": 32,
    "every": 10,
    "fixed_last_epochs": 10,
}
DB = {"enabled": True, "keep_prob": 0.9, "schedule": {5: [1, 3, 5], 80: [3, 5, 7], 150: [7, 7, 7]}}


def lr(sched: dict, epoch: int, it: int = 0, epochs: int = EPOCHS) -> float:
    return lr_at(sched, BASE, epochs, epoch, it, ITERS)


# ---------------------------------------------------------------------------------------------
# Learning rate
# ---------------------------------------------------------------------------------------------


def test_official_burn_in() -> None:
    assert lr(OFFICIAL, 0, 0) == 0.0
    assert lr(OFFICIAL, 2, 50) == pytest.approx(BASE * 0.5**4)  # half of the 5-epoch burn-in
    assert lr(OFFICIAL, 1, 0) == pytest.approx(BASE * 0.2**4)
    assert lr(OFFICIAL, 4, 99) == pytest.approx(BASE * (4.99 / 5) ** 4)
    assert lr(OFFICIAL, 5, 0) == BASE
    # per iteration during the burn-in
    assert lr(OFFICIAL, 0, 10) < lr(OFFICIAL, 0, 11) < lr(OFFICIAL, 0, 12)


def test_official_flat_then_per_epoch_cosine() -> None:
    assert lr(OFFICIAL, 10, 0) == BASE
    assert lr(OFFICIAL, 10, 73) == BASE
    assert lr(OFFICIAL, 20, 99) == BASE  # flat until epoch 20 (inclusive)
    mid = (20 + 270) // 2  # t = 0.5
    assert lr(OFFICIAL, mid, 0) == pytest.approx(MIN + 0.5 * (BASE - MIN))
    t = (21 - 20) / 250
    expected = MIN + 0.5 * (BASE - MIN) * (1 + math.cos(math.pi * t))
    assert lr(OFFICIAL, 21, 0) == pytest.approx(expected)
    # one value per epoch
    assert lr(OFFICIAL, 100, 0) == lr(OFFICIAL, 100, 99)
    values = [lr(OFFICIAL, e) for e in range(20, 271)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert lr(OFFICIAL, 270) == pytest.approx(MIN)
    assert lr(OFFICIAL, 271) == MIN and lr(OFFICIAL, 299, 99) == MIN


def test_paper_linear_warmup_and_cosine_to_the_end() -> None:
    assert lr(PAPER, 2, 0) == pytest.approx(BASE * 0.5)  # linear over 4 epochs
    assert lr(PAPER, 1, 0) == pytest.approx(BASE * 0.25)
    assert lr(PAPER, 4, 0) == pytest.approx(BASE)
    # cosine per iteration: values change within an epoch
    assert lr(PAPER, 100, 0) > lr(PAPER, 100, 50) > lr(PAPER, 100, 99)
    mid = 4 + (EPOCHS - 4) / 2  # epoch 152 exactly
    assert lr(PAPER, int(mid), 0) == pytest.approx(MIN + 0.5 * (BASE - MIN))
    last = lr(PAPER, EPOCHS - 1, ITERS - 1)
    assert MIN < last < MIN + 1e-9
    assert lr_at(PAPER, BASE, EPOCHS, EPOCHS, 0, ITERS) == pytest.approx(MIN)


def test_step_schedule() -> None:
    assert lr(STEP, 2, 50) == pytest.approx(BASE * 0.5**4)  # the same burn-in as official
    assert lr(STEP, 5) == BASE
    assert lr(STEP, 179, 99) == BASE
    assert lr(STEP, 180) == pytest.approx(BASE * 0.1)
    assert lr(STEP, 239) == pytest.approx(BASE * 0.1)
    assert lr(STEP, 240) == pytest.approx(BASE * 0.01)
    assert lr(STEP, 299) == pytest.approx(BASE * 0.01)


def test_step_at_a_fractional_epoch() -> None:
    # the default profile: 0.15-epoch linear warm-up, base rate, x0.1 at 85 % of 8 epochs
    sched = {**STEP, "warmup_epochs": 0.15, "warmup_power": 1, "steps": [6.8]}
    iters = 250
    assert lr_at(sched, 1e-3, 8, 0, 0, iters) == 0.0
    assert lr_at(sched, 1e-3, 8, 0, 18, iters) == pytest.approx(1e-3 * (18 / 250) / 0.15)
    assert lr_at(sched, 1e-3, 8, 0, 38, iters) == 1e-3  # warm-up over after 37.5 iterations
    assert lr_at(sched, 1e-3, 8, 6, 199, iters) == 1e-3  # epoch 6.796
    assert lr_at(sched, 1e-3, 8, 6, 200, iters) == pytest.approx(1e-4)  # epoch 6.8
    assert lr_at(sched, 1e-3, 8, 7, 249, iters) == pytest.approx(1e-4)
    # integer steps are unchanged: the whole epoch `s` and after
    assert lr_at({**sched, "steps": [6]}, 1e-3, 8, 5, 249, iters) == 1e-3
    assert lr_at({**sched, "steps": [6]}, 1e-3, 8, 6, 0, iters) == pytest.approx(1e-4)


def test_unknown_lr_schedule() -> None:
    with pytest.raises(ConfigError, match="lr_schedule.name.*'linear'.*official, paper, step"):
        lr({**OFFICIAL, "name": "linear"}, 50)


def test_short_profile_schedule() -> None:
    # the default profile: 6 epochs, warm-up 1 (power 2), flat through epoch 1, cosine to epoch 5
    sched = {
        **OFFICIAL,
        "warmup_epochs": 1,
        "warmup_power": 2,
        "flat_until_epoch": 1,
        "cosine_end_epoch": 5,
    }
    values = [lr_at(sched, 4e-3, 6, e, 0, 10) for e in range(6)]
    assert values[0] == 0.0 and values[1] == 4e-3
    assert lr_at(sched, 4e-3, 6, 0, 5, 10) == pytest.approx(4e-3 * 0.25)
    assert values[1] > values[2] > values[3] > values[4] > values[5]
    assert values[5] == pytest.approx(MIN)


# ---------------------------------------------------------------------------------------------
# Multi-scale input size
# ---------------------------------------------------------------------------------------------


def test_multiscale_sizes() -> None:
    assert multiscale_sizes(MS) == list(range(320, 609, 32))
    with pytest.raises(ConfigError, match="multiples of 32"):
        multiscale_sizes({**MS, "min_size": 100, "max_size": 200, "step": 50})
    with pytest.raises(ConfigError):
        multiscale_sizes({**MS, "min_size": 640})


def test_input_size_is_constant_within_a_block() -> None:
    for block in range(1, 40):
        sizes = {input_size_at(MS, 608, EPOCHS, 3, block * 10 + k, seed=0) for k in range(10)}
        assert len(sizes) == 1


def test_input_size_is_deterministic_and_in_range() -> None:
    draw = [input_size_at(MS, 608, EPOCHS, 3, i * 10, seed=0) for i in range(1, 200)]
    again = [input_size_at(MS, 608, EPOCHS, 3, i * 10, seed=0) for i in range(1, 200)]
    other = [input_size_at(MS, 608, EPOCHS, 3, i * 10, seed=1) for i in range(1, 200)]
    assert draw == again
    assert draw != other
    assert set(draw) <= set(range(320, 609, 32))
    assert len(set(draw)) >= 6  # actually varies
    assert all(s % 32 == 0 for s in draw)
    # the size depends on the global iteration, not on the epoch (all ranks agree)
    assert draw == [input_size_at(MS, 608, EPOCHS, 100, i * 10, seed=0) for i in range(1, 200)]


def test_input_size_fixed_at_max_in_the_last_epochs_and_when_disabled() -> None:
    for epoch in (290, 295, 299):
        assert all(
            input_size_at(MS, 416, EPOCHS, epoch, it, seed=0) == 608 for it in range(0, 500, 7)
        )
    assert input_size_at(MS, 416, EPOCHS, 0, 0, seed=0) == 608  # the first block
    off = {**MS, "enabled": False}
    assert {
        input_size_at(off, 416, EPOCHS, e, i, seed=0) for e in (0, 100, 299) for i in (0, 15, 1234)
    } == {416}


# ---------------------------------------------------------------------------------------------
# Mixup and DropBlock
# ---------------------------------------------------------------------------------------------


def test_mixup_active() -> None:
    mix = {"enabled": True, "alpha": 1.5, "off_last_epochs": 30}
    assert mixup_active(mix, 300, 0) and mixup_active(mix, 300, 269)
    assert not mixup_active(mix, 300, 270) and not mixup_active(mix, 300, 299)
    assert not any(mixup_active({**mix, "enabled": False}, 300, e) for e in (0, 100, 299))
    assert not mixup_active(mix, 20, 0)  # fewer epochs than off_last_epochs


def test_dropblock_schedule() -> None:
    assert dropblock_at(DB, 0) is None
    assert dropblock_at(DB, 4) is None
    assert dropblock_at(DB, 5) == ([1, 3, 5], 0.9)
    assert dropblock_at(DB, 79) == ([1, 3, 5], 0.9)
    assert dropblock_at(DB, 80) == ([3, 5, 7], 0.9)
    assert dropblock_at(DB, 149) == ([3, 5, 7], 0.9)
    assert dropblock_at(DB, 150) == ([7, 7, 7], 0.9)
    assert dropblock_at(DB, 299) == ([7, 7, 7], 0.9)
    assert dropblock_at({**DB, "enabled": False}, 200) is None
    # string keys (JSON round trip) and unsorted schedules
    db = {**DB, "keep_prob": 0.8, "schedule": {"10": [3, 3, 3], "2": [1, 1, 1]}}
    assert dropblock_at(db, 1) is None
    assert dropblock_at(db, 2) == ([1, 1, 1], 0.8)
    assert dropblock_at(db, 12) == ([3, 3, 3], 0.8)


def test_asff_star_dropblock_from_the_experiment_file() -> None:
    cfg = load_experiment(REPO / "experiments" / "table1" / "asff-star.yaml", params_path=None)
    db = cfg["train"]["dropblock"]
    assert dropblock_at(db, 4) is None
    assert dropblock_at(db, 5) == ([1, 3, 5], 0.9)
    assert dropblock_at(db, 200) == ([7, 7, 7], 0.9)
    base = load_experiment(REPO / "experiments" / "table1" / "asff.yaml", params_path=None)
    assert dropblock_at(base["train"]["dropblock"], 200) is None
