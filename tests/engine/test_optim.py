"""Optimizers (train.optimizer) and the weight moving average (train.ema)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from study.engine.ema import ModelEMA
from study.engine.trainer import build_optimizer
from study.errors import StudyError
from study.models import build_model

TC = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


def _model() -> nn.Module:
    return build_model("yolov3-spp", num_classes=3, width=0.125, depth=0.34)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_only_on_convolution_weights(name: str) -> None:
    model = _model()
    opt = build_optimizer(model, {**TC, "optimizer": name})
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 4 for p in decayed["params"])  # conv kernels
    assert all(p.ndim == 1 for p in plain["params"])  # BN weights/biases, conv biases
    n = sum(1 for _ in model.parameters())
    assert len(decayed["params"]) + len(plain["params"]) == n


def test_adamw_uses_momentum_as_beta1_and_decouples_the_decay() -> None:
    opt = build_optimizer(_model(), {**TC, "optimizer": "adamw", "momentum": 0.85})
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.85, 0.999)
    # decoupled decay: with zero gradient a weight shrinks by lr * wd, not by a gradient step
    opt = build_optimizer(
        nn.Sequential(nn.Conv2d(2, 2, 1, bias=False)), {**TC, "optimizer": "adamw"}
    )
    (w,) = opt.param_groups[0]["params"]
    w.grad = torch.zeros_like(w)
    before = w.detach().clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before * (1 - 0.01 * 5e-4))


def test_unknown_optimizer_is_a_study_error() -> None:
    with pytest.raises(StudyError, match="train.optimizer: unknown 'adam'; valid: sgd, adamw"):
        build_optimizer(_model(), {**TC, "optimizer": "adam"})


def test_ema_follows_the_closed_form_average() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9, ramp=2.0)
    expected = 0.0
    for t in range(1, 6):
        with torch.no_grad():
            model[0].weight.fill_(float(t))
        model[1].num_batches_tracked += 1
        ema.update(model)
        d = 0.9 * (1 - math.exp(-t / 2.0))
        expected = d * expected + (1 - d) * t
        assert ema.module[0].weight.item() == pytest.approx(expected)
    assert ema.updates == 5 and int(ema.module[1].num_batches_tracked) == 5  # copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_ema_state_round_trip() -> None:
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5, ramp=1.0)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 2), decay=0.5, ramp=1.0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    for a, b in zip(ema.module.parameters(), other.module.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="decay must be in"):
        ModelEMA(model, decay=1.0)
