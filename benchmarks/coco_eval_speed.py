"""COCO scoring time, pycocotools against faster-coco-eval, on a generated file the size of
COCO val2017 (5,000 images, about 36,000 boxes, 100 detections per image), and the check that
both give the same AP, AP50, AP75, APs, APm, APl.

Usage: python benchmarks/coco_eval_speed.py [--images 5000] [--per-image 100] [--repeats 1]
Prints seconds per backend (loading the detections + evaluate + accumulate + summarize) and the
speed ratio.
"""

from __future__ import annotations

import argparse
import time

from study.eval.coco_eval import METRIC_KEYS, backend_version, coco_metrics
from study.eval.generated import coco_from_dict, generated_detections, generated_ground_truth

BACKENDS = ("pycocotools", "faster-coco-eval")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--per-image", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per backend (median)")
    args = p.parse_args()
    gt = generated_ground_truth(num_images=args.images)
    dets = generated_detections(gt, per_image=args.per_image)
    coco = coco_from_dict(gt)
    print(
        f"{len(gt['images'])} images, {len(gt['annotations'])} boxes, {len(dets)} detections; "
        + ", ".join(backend_version(b) for b in BACKENDS)
    )
    seconds, metrics = {}, {}
    for backend in BACKENDS:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            metrics[backend] = coco_metrics(coco, dets, backend=backend)
            times.append(time.perf_counter() - start)
        seconds[backend] = sorted(times)[len(times) // 2]
        print(f"{backend:>17s}: {seconds[backend]:7.2f} s")
    diff = max(
        abs(metrics[BACKENDS[0]][k] - metrics[BACKENDS[1]][k])
        for k in METRIC_KEYS
        if metrics[BACKENDS[0]][k] is not None
    )
    print(f"largest metric difference: {diff:.1e}")
    ratio = seconds[BACKENDS[0]] / seconds[BACKENDS[1]]
    print(f"speed ratio pycocotools / faster-coco-eval: x{ratio:.1f}")


if __name__ == "__main__":
    main()
