"""COCO AP of one run at its eval size and at several test sizes (the paper's Table 4 and Fig. 1:
320/416/608/800).

``study evaluate`` calls :func:`evaluate_run`: the main evaluation at ``eval.img_size``
(``metrics.json``, ``detections.json.gz``) and, with ``--test-sizes``, every other size of
``eval.test_sizes`` with the same protocol (only the square input size changes), written as
``test_sizes/s<size>.json`` (metrics + meta, like metrics.json) and
``test_sizes/s<size>.detections.json.gz``. The main size is not scored twice:
:func:`read_test_sizes` takes it from ``metrics.json``.

Everything is checked before any inference, written into a folder beside the old files and
swapped in only when every size is done, so a failed run leaves an earlier run's files as they
were (and matching each other).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from study.config import check_size_list
from study.errors import StudyError
from study.eval.coco_eval import DETECTIONS, evaluate
from study.utils import ensure_writable, swap_in, write_json

SIZES_DIR = "test_sizes"
# Files of the layout before detections were committed with the results (removed on rewrite).
LEGACY = ("detections.json", "test_sizes_detections")


def size_detections(size: int) -> str:
    """The detections file of a test size, beside its ``s<size>.json`` in ``test_sizes/``."""
    return f"s{size}.{DETECTIONS}"


def evaluate_run(
    model: nn.Module,
    cfg: Mapping[str, Any],
    make_dataset: Callable[[dict[str, Any]], Dataset],
    dataset: Dataset,
    device: torch.device | str,
    results_dir: str | Path,
    extra_meta: Mapping[str, Any] | None = None,
    test_sizes: bool = False,
    extra_files: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` at ``eval.img_size`` and, with ``test_sizes``, at every
    other size of ``eval.test_sizes`` (``make_dataset(cfg)`` builds the split for a config whose
    ``eval.img_size`` was changed). Returns the main metrics with meta; writes the files of the
    module docstring under ``results_dir``, and ``extra_files`` ({name: JSON content}, e.g. the
    learning curve) with them."""
    main = int(cfg["eval"]["img_size"])
    sizes: list[int] = []
    if test_sizes:  # checked before anything is evaluated or written
        source = f"config of {cfg.get('name') or 'the run'}"
        sizes = check_size_list(cfg["eval"].get("test_sizes"), "eval.test_sizes", source)
    results_dir = Path(results_dir)
    ensure_writable(results_dir)
    work = results_dir / ".evaluate.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        metrics = evaluate(model, dataset, cfg, device, out_dir=work, extra_meta=extra_meta)
        if test_sizes:
            (work / SIZES_DIR).mkdir()
            for size in sizes:
                if size != main:
                    _evaluate_size(model, cfg, make_dataset, device, work, size, extra_meta)
        for name, content in (extra_files or {}).items():
            write_json(work / name, content)
        for name in (DETECTIONS, "metrics.json", *(extra_files or {})):
            os.replace(work / name, results_dir / name)
        if test_sizes:
            swap_in(work / SIZES_DIR, results_dir / SIZES_DIR)
        for name in LEGACY:
            path = results_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return metrics


def _evaluate_size(
    model: nn.Module,
    cfg: Mapping[str, Any],
    make_dataset: Callable[[dict[str, Any]], Dataset],
    device: torch.device | str,
    work: Path,
    size: int,
    extra_meta: Mapping[str, Any] | None,
) -> dict[str, Any]:
    cfg_s = copy.deepcopy(dict(cfg))
    cfg_s["eval"]["img_size"] = size
    meta = {**(extra_meta or {}), "detections": size_detections(size)}
    tmp = work / f"s{size}"
    metrics = evaluate(model, make_dataset(cfg_s), cfg_s, device, out_dir=tmp, extra_meta=meta)
    os.replace(tmp / "metrics.json", work / SIZES_DIR / f"s{size}.json")
    os.replace(tmp / DETECTIONS, work / SIZES_DIR / size_detections(size))
    tmp.rmdir()
    return metrics


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
