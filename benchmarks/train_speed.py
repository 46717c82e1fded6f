"""Training-step throughput per variant: images/s and peak memory (model + loss + SGD step).

The data loader is excluded (see data_speed.py); batches are random images with random boxes,
so the number measures the model's training cost. Usage:
    python benchmarks/train_speed.py --models baseline asff --size 608 --batch 16 --iters 200 \
        --amp bf16 --width 1 --depth 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from study.engine.loss import YOLOLoss
from study.engine.trainer import amp_dtype, init_objectness_prior_, init_official_
from study.models import build_model
from study.utils import device_description, pick_device


def random_targets(batch: int, size: int, num_classes: int, gen: torch.Generator) -> list[dict]:
    targets = []
    for _ in range(batch):
        n = 8
        xy = torch.rand(n, 2, generator=gen) * size * 0.8
        wh = torch.rand(n, 2, generator=gen) * size * 0.3 + 8
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], 1)
        targets.append(
            {
                "boxes": boxes,
                "labels": torch.randint(0, num_classes, (n,), generator=gen),
                "weights": torch.ones(n),
            }
        )
    return targets


def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    model = build_model(name, num_classes=80, width=args.width, depth=args.depth).to(device)
    init_official_(model)
    init_objectness_prior_(model, 0.01)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    crit = YOLOLoss(model.anchors, model.anchor_masks, 80, iou_loss="iou", label_smoothing=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    dtype = amp_dtype(args.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    targets = [
        {k: v.to(device) for k, v in t.items()}
        for t in random_targets(args.batch, args.size, 80, gen)
    ]
    times = []
    for i in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = model(images)
        losses = crit([o._replace(raw=o.raw.float()) for o in outputs], targets, args.size)
        opt.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    sec = sum(times) / len(times)
    out = {
        "model": name,
        "size": args.size,
        "batch": args.batch,
        "amp": args.amp,
        "width": args.width,
        "depth": args.depth,
        "iters": args.iters,
        "images_per_s": round(args.batch / sec, 2),
        "ms_per_iter": round(1000 * sec, 2),
        "final_loss": round(losses["total"].item(), 3),
        "device": device_description(device),
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["baseline", "asff"])
    p.add_argument("--size", type=int, default=608)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--depth", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    device = pick_device(args.device)
    results = [bench(name, args, device) for name in args.models]
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
