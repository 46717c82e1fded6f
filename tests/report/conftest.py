"""The results of a small study, shared by the report's tests: a 3-strategy x 3-seed fusion
study scored on a 20-image validation split, one Table 1 row, and the bench's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.data import load_coco
from study.eval.coco_eval import coco_metrics, write_detections

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def _gt(root: Path, n_images: int = 20) -> Path:
    """A val split whose image i has one small box of class a and one large box of class b."""
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 200, "height": 200})
        for cat, box in ((1, [10.0, 10.0, 20.0, 20.0]), (2, [50.0, 50.0, 120.0, 110.0])):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    path = root / "data" / "annotations" / "instances_val2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return path


def _detections(n_images: int, found: float, rng: np.random.Generator) -> list[dict]:
    """Each true box found with probability ``found`` (exact box), plus one false positive."""
    dets = []
    for i in range(1, n_images + 1):
        for cat, box in ((1, [10.0, 10.0, 20.0, 20.0]), (2, [50.0, 50.0, 120.0, 110.0])):
            if rng.random() < found:
                dets.append({"image_id": i, "category_id": cat, "bbox": box, "score": 0.9})
        dets.append(
            {"image_id": i, "category_id": 1, "bbox": [150.0, 5.0, 20.0, 20.0], "score": 0.5}
        )
    return dets


def _write_run(results: Path, ann: Path, exp: str, seed: int, dets: list[dict]) -> None:
    """metrics.json (scored by pycocotools, at size 64), detections.json.gz, train_summary.json,
    and test_sizes/s96.json (the same detections scored again, as another size)."""
    folder = results / exp / f"seed{seed}"
    folder.mkdir(parents=True)
    metrics = coco_metrics(load_coco(ann), dets)
    metrics.pop("summary")
    meta = {
        "profile": "test",
        "dataset": {"root": str(ann.parents[1]), "ann_file": str(ann), "num_images": 20},
        "protocol": {"img_size": 64},
    }
    (folder / "metrics.json").write_text(json.dumps({**metrics, "meta": meta}))
    write_detections(folder / "detections.json.gz", dets)
    (folder / "test_sizes").mkdir()
    big = {k: (v if v is None else v * 1.1) for k, v in metrics.items()}
    meta96 = {**meta, "protocol": {"img_size": 96}}
    (folder / "test_sizes" / "s96.json").write_text(json.dumps({**big, "meta": meta96}))
    (folder / "train_summary.json").write_text(json.dumps({"wall_seconds": 120, "iterations": 9}))


def _write_bench(results: Path, models: list[str]) -> None:
    """bench.csv (two sizes, fp32 eager plus an fp16 row that the tables must not use) and
    bench_overhead.csv, as `study bench` writes them."""
    rows = []
    for i, model in enumerate(models):
        for size, ms in ((64, 10.0 + i), (96, 20.0 + i)):
            for dtype, scale in (("fp32", 1.0), ("fp16", 0.5)):
                rows.append(
                    {
                        "model": model,
                        "size": size,
                        "dtype": dtype,
                        "mode": "eager",
                        "total_ms_median": ms * scale,
                        "params": 2_500_000,
                        "flops": 1.2e9,
                        "device": "cpu (test)",
                    }
                )
    pd.DataFrame(rows).to_csv(results / "bench.csv", index=False)
    over = [
        {
            "size": 64,
            "dtype": "fp32",
            "mode": "eager",
            "model": "fusion/good",
            "reference": "fusion/none",
            "ratio": 1.1,
            "ratio_forward": 1.12,
            "ratio_round_median": 1.1,
            "ratio_round_min": 1.04,
            "ratio_round_max": 1.2,
            "rounds": 10,
            "device": "cpu (test)",
        }
    ]
    pd.DataFrame(over).to_csv(results / "bench_overhead.csv", index=False)


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, dict]:
    """Results of a 3-strategy x 3-seed fusion study: `good` finds far more than `none`,
    `same` exactly as much; and one Table 1 row."""
    ann = _gt(tmp_path)
    results = tmp_path / "results"
    found = {"none": 0.5, "good": 0.95, "same": 0.5}
    for exp, p in found.items():
        for seed in (0, 1, 2):
            rng = np.random.default_rng(seed)  # `same` gets exactly `none`'s detections
            _write_run(results, ann, f"fusion/{exp}", seed, _detections(20, p, rng))
    _write_run(results, ann, "table1/bof", 0, _detections(20, 0.9, np.random.default_rng(7)))
    _write_bench(results, ["fusion/none", "fusion/good", "fusion/same", "table1/bof"])
    params = {
        "fusions": ["none", "good", "same"],
        "seeds": [0, 1, 2],
        "table1": ["bof"],
        "table1_not_run": ["ga", "baseline"],
        "table1_seeds": [0],
        "report": {"bootstrap_replicates": 200, "bootstrap_seed": 0, "min_ap": 0.1},
    }
    return results, params


@pytest.fixture
def designs_study(tmp_path: Path) -> tuple[Path, dict]:
    """Results of the extended comparison: Table 3's none and asff (asff finds more), and two
    designs at the same 3 seeds, `better` (finds nearly everything) and `copy` (exactly none's
    detections); each bench as `study bench` and `study bench --designs` write them."""
    ann = _gt(tmp_path)
    results = tmp_path / "results"
    runs = {"fusion/none": 0.5, "fusion/asff": 0.7, "designs/better": 0.97, "designs/copy": 0.5}
    for exp, p in runs.items():
        for seed in (0, 1, 2):
            rng = np.random.default_rng(seed)  # `copy` gets exactly `none`'s detections
            _write_run(results, ann, exp, seed, _detections(20, p, rng))
    _write_bench(results, ["fusion/none", "fusion/asff"])
    (results / "designs_report").mkdir()
    _write_bench(results / "designs_report", list(runs))
    params = {
        "fusions": ["none", "asff"],
        "designs": ["better", "copy"],
        "seeds": [0, 1, 2],
        "report": {
            "bootstrap_replicates": 200,
            "bootstrap_seed": 0,
            "min_ap": 0.1,
            "pairwise": "asff",
        },
    }
    return results, params
