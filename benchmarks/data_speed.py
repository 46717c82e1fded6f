"""Data-loading throughput: images/s of the training loader alone (decode + augment + collate).

Usage: python benchmarks/data_speed.py --root ../shared/data/coco-subset --split train2017 \
           --size 608 --workers 0 1 2 --batches 20
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from study.config import load_experiment
from study.data import CocoDetection, MixupDataset, build_train_transforms, collate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default="../shared/data/coco-subset")
    p.add_argument("--split", default="train2017")
    p.add_argument("--size", type=int, default=608)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--experiment",
        default="experiments/baseline.yaml",
        help="augmentation and mixup settings come from here",
    )
    args = p.parse_args()
    cfg = load_experiment(args.experiment, params_path=None)["train"]
    base = CocoDetection(args.root, args.split)
    ds = MixupDataset(
        base,
        alpha=cfg["mixup"]["alpha"],
        enabled=cfg["mixup"]["enabled"],
        transforms=build_train_transforms(cfg["augment"], args.size),
    )
    print(
        f"{args.root} {args.split}: {len(base)} images, size {args.size}, mixup "
        f"{cfg['mixup']['enabled']}, augment {cfg['augment']}, torch threads "
        f"{torch.get_num_threads()}"
    )
    for workers in args.workers:
        loader = DataLoader(
            ds,
            batch_size=args.batch,
            shuffle=True,
            num_workers=workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
        )
        it = iter(loader)
        next(it)  # start-up (worker spawn) is not counted
        t0, n = time.perf_counter(), 0
        for _ in range(args.batches):
            try:
                images, _ = next(it)
            except StopIteration:
                it = iter(loader)
                images, _ = next(it)
            n += images.shape[0]
        dt = time.perf_counter() - t0
        per = f"{n / dt / max(1, workers):.1f} per worker" if workers else "main process"
        print(f"workers={workers}: {n / dt:.1f} images/s ({per})")


if __name__ == "__main__":
    main()
