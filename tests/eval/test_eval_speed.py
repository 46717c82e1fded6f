"""measure_speed on a tiny conv detector on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study.eval.speed import _percentile, count_parameters, measure_speed

NUM_CLASSES = 3


class TinyDetector(nn.Module):
    """One stride-8 conv whose output is decoded like a YOLO level (one anchor, 16 px prior)."""

    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5 + NUM_CLASSES, kernel_size=8, stride=8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)  # (B, 5 + C, H, W)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        b, c, h, w = raw.shape
        raw = raw.permute(0, 2, 3, 1).float()  # (B, H, W, 5 + C)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx = (xs + raw[..., 0].sigmoid()) * 8
        cy = (ys + raw[..., 1].sigmoid()) * 8
        wh = raw[..., 2:4].clamp(max=4).exp() * 16
        out = torch.cat([cx[..., None], cy[..., None], wh, raw[..., 4:].sigmoid()], dim=-1)
        return out.reshape(b, h * w, c)


def test_measure_speed_on_cpu_returns_positive_numbers():
    model = TinyDetector().train()
    s = measure_speed(model, img_size=64, device="cpu", warmup=2, iters=5)
    for key in ("ms_mean", "ms_median", "ms_p90", "fps"):
        assert s[key] > 0, key
    assert s["fps"] == pytest.approx(1000.0 / s["ms_mean"])
    assert s["ms_p90"] >= s["ms_median"]
    assert s["params"] == 3 * 8 * 8 * 8 + 8 == count_parameters(model)
    assert s["device"].startswith("cpu")
    assert s["iters"] == 5 and s["batch"] == 1 and s["include_nms"] is True
    assert s["cuda_synchronized"] is False
    assert model.training  # mode restored


def test_measure_speed_batch_and_no_nms_and_bf16():
    s = measure_speed(
        TinyDetector(),
        img_size=32,
        device=torch.device("cpu"),
        batch=2,
        warmup=0,
        iters=2,
        include_nms=False,
        amp="bf16",
    )
    assert s["batch"] == 2 and s["include_nms"] is False and s["amp"] == "bf16"
    assert s["ms_mean"] > 0


def test_measure_speed_rejects_zero_iterations():
    with pytest.raises(ValueError):
        measure_speed(TinyDetector(), img_size=32, device="cpu", iters=0)


def test_percentile():
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert _percentile([7.0], 90) == 7.0
