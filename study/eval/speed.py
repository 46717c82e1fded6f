"""Inference speed as the official code measured it, but with honest GPU timing.

The official evaluator (``utils/cocoapi_evaluator.py``) times batch-1 inference on val2017,
skips the first 10 images, and includes post-processing (NMS) -- but it reads ``time.time()``
without ``torch.cuda.synchronize()``, so on a GPU it partly measured kernel launches rather
than their execution. Here every timed iteration synchronizes before reading the clock on CUDA.

Input is random noise of the evaluation size. With an untrained model far more boxes pass the
0.001 confidence threshold than with a trained one, so the NMS share of the time is pessimistic.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from study.eval.coco_eval import autocast_context, decoder_of
from study.eval.postprocess import postprocess
from study.utils import device_description


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: int) -> int:
    """FLOPs of one forward pass at batch 1 and ``img_size``, counted by
    ``torch.utils.flop_counter`` (a multiply-add counts 2) on the model's device."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, img_size, img_size, device=device)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure_speed(
    model: nn.Module,
    img_size: int,
    device: torch.device | str,
    batch: int = 1,
    warmup: int = 10,
    iters: int = 50,
    include_nms: bool = True,
    amp: Any = None,
    conf_thresh: float = 0.001,
    nms_thresh: float = 0.65,
) -> dict[str, Any]:
    """Time forward + decode (+ NMS) on ``batch`` x 3 x img_size x img_size noise.

    ``model`` must already be on ``device``; ``warmup`` iterations are run but not timed.
    Returns milliseconds per image (``ms_mean``, ``ms_median``, ``ms_p90``), ``fps`` (images
    per second from the mean), ``params`` and the ``device`` description, plus the settings.
    """
    if iters < 1 or batch < 1 or warmup < 0:
        raise ValueError("iters and batch must be >= 1 and warmup >= 0")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, img_size, img_size, generator=gen).to(device)
    decoder = decoder_of(model)
    was_training = model.training
    model.eval()
    times_ms: list[float] = []
    try:
        with torch.inference_mode():
            for i in range(warmup + iters):
                _sync(device)
                start = time.perf_counter()
                with autocast_context(device, amp):
                    pred = decoder.decode(model(images))
                if include_nms:
                    postprocess(pred, conf_thresh, nms_thresh)
                _sync(device)
                if i >= warmup:
                    times_ms.append((time.perf_counter() - start) * 1000.0 / batch)
    finally:
        model.train(was_training)
    mean = statistics.fmean(times_ms)
    return {
        "ms_mean": mean,
        "ms_median": statistics.median(times_ms),
        "ms_p90": _percentile(times_ms, 90),
        "fps": 1000.0 / mean,
        "params": count_parameters(model),
        "flops": count_flops(model, img_size),
        "flops_unit": "FLOPs per image at img_size (multiply-add = 2; torch.utils.flop_counter)",
        "device": device_description(device),
        "img_size": img_size,
        "batch": batch,
        "warmup": warmup,
        "iters": iters,
        "include_nms": include_nms,
        "amp": None if amp is None or amp is False else str(amp),
        "cuda_synchronized": device.type == "cuda",
        "torch": torch.__version__,
    }
