"""COCO AP of one model at several test sizes (the paper's Table 4 and Fig. 1: 320/416/608/800).

``study evaluate --test-sizes`` calls :func:`evaluate_test_sizes` after the main evaluation at
``eval.img_size``. Each size of ``eval.test_sizes`` other than the main one is evaluated with the
same protocol (only the square input size changes) and written as
``<results>/test_sizes/s<size>.json`` (metrics + meta, like metrics.json) and
``<results>/test_sizes_detections/s<size>.json`` (the COCO results). The main size is not scored
twice: :func:`read_test_sizes` takes it from ``metrics.json``.

Both folders are written beside the old ones and swapped in at the end, so a failed run leaves
an earlier run's files as they were.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from study.errors import ConfigError, StudyError
from study.eval.coco_eval import evaluate

SIZES_DIR, DETECTIONS_DIR = "test_sizes", "test_sizes_detections"


def check_sizes(sizes: Any, where: str) -> list[int]:
    """``sizes`` as a sorted list of distinct positive multiples of 32 (the largest stride)."""
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ConfigError(f"{where}: expected a non-empty list of sizes, got {sizes!r}")
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, int) or s <= 0 or s % 32]
    if bad:
        raise ConfigError(f"{where}: sizes must be positive multiples of 32, got {bad}")
    return sorted(set(sizes))


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` (a folder) by ``tmp``, removing the old one only after the rename."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def evaluate_test_sizes(
    model: nn.Module,
    cfg: Mapping[str, Any],
    make_dataset: Callable[[dict[str, Any]], Dataset],
    device: torch.device | str,
    results_dir: str | Path,
    extra_meta: Mapping[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    """Evaluate ``model`` at every ``cfg["eval"]["test_sizes"]`` except ``eval.img_size``.

    ``make_dataset(cfg)`` builds the validation split for a config (its eval transforms follow
    ``cfg["eval"]["img_size"]``). Returns {size: metrics with meta}; writes the files described
    in the module docstring under ``results_dir``.
    """
    sizes = check_sizes(cfg["eval"].get("test_sizes"), "eval.test_sizes")
    main = int(cfg["eval"]["img_size"])
    results_dir = Path(results_dir)
    tmp_sizes = results_dir / f".{SIZES_DIR}.tmp"
    tmp_dets = results_dir / f".{DETECTIONS_DIR}.tmp"
    for tmp in (tmp_sizes, tmp_dets):
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[int, dict[str, Any]] = {}
    try:
        for size in sizes:
            if size == main:
                continue
            cfg_s = copy.deepcopy(dict(cfg))
            cfg_s["eval"]["img_size"] = size
            work = tmp_sizes / f"s{size}"
            metrics = evaluate(
                model, make_dataset(cfg_s), cfg_s, device, out_dir=work, extra_meta=extra_meta
            )
            tmp_dets.mkdir(parents=True, exist_ok=True)
            (work / "metrics.json").rename(tmp_sizes / f"s{size}.json")
            (work / "detections.json").rename(tmp_dets / f"s{size}.json")
            work.rmdir()
            out[size] = metrics
        tmp_sizes.mkdir(parents=True, exist_ok=True)
        tmp_dets.mkdir(parents=True, exist_ok=True)
    except BaseException:
        for tmp in (tmp_sizes, tmp_dets):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp_sizes, results_dir / SIZES_DIR)
    _swap_in(tmp_dets, results_dir / DETECTIONS_DIR)
    return out


def read_test_sizes(run_dir: str | Path) -> dict[int, dict[str, Any]]:
    """{size: metrics} of one run: ``metrics.json`` (at its eval size) plus every
    ``test_sizes/s<size>.json``. StudyError naming the file for an unreadable one."""
    run_dir = Path(run_dir)
    files = [run_dir / "metrics.json", *sorted((run_dir / SIZES_DIR).glob("s*.json"))]
    out: dict[int, dict[str, Any]] = {}
    for path in files:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            size = int(data["meta"]["protocol"]["img_size"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"{path}: invalid JSON: {exc}") from None
        except (KeyError, TypeError, ValueError):
            raise StudyError(
                f"{path}: no meta.protocol.img_size (not a study metrics file)"
            ) from None
        out[size] = data
    return dict(sorted(out.items()))
