"""One tiny study folder for the end-to-end tests (tests/test_cli.py, tests/test_integrity.py):
the repository's experiments, a few generated images and a tiny CPU profile."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_study(
    folder: Path, num_train: int = 2, num_val: int = 1, eval_cfg: dict[str, Any] | None = None
) -> Path:
    """``folder`` with experiments/, a generated dataset in data/ and params.yaml whose `tiny`
    profile trains fusion/none (seed 0) for one epoch of batch 2 on the CPU."""
    from study.data.synthetic import MIN_IMG_SIZE, generate

    shutil.copytree(REPO / "experiments", folder / "experiments")
    generate(folder / "data", num_train=num_train, num_val=num_val, img_size=MIN_IMG_SIZE, seed=0)
    profile: dict[str, Any] = {
        "data": {"root": "data", "workers": 0},
        "model": {"width": 0.125, "depth": 0.34},
        "train": {"epochs": 1, "batch_size": 2, "img_size": 128, "device": "cpu"},
    }
    if eval_cfg:
        profile["eval"] = eval_cfg
    params = {
        "profile": "tiny",
        "dataset": "data",
        "fusions": ["none"],
        "seeds": [0],
        "profiles": {"tiny": profile},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder
