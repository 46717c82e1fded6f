"""Fixtures for the data tests: the real COCO subset, tiny COCO-layout datasets, the generator."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# data_helpers sits beside this file; make it importable under any pytest import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from data_helpers import coco_dict, write_image  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
COCO_SUBSET_ENV = "STUDY_COCO_SUBSET"


def coco_subset_path() -> Path:
    """``$STUDY_COCO_SUBSET`` or ``<repo>/../shared/data/coco-subset``."""
    default = REPO_ROOT.parent / "shared" / "data" / "coco-subset"
    return Path(os.environ.get(COCO_SUBSET_ENV) or default)


@pytest.fixture(scope="session")
def coco_subset() -> Path:
    """The real COCO 2017 subset (read-only); skipped when it is not present."""
    path = coco_subset_path()
    if not (path / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"COCO subset not found at {path} (set {COCO_SUBSET_ENV} to its folder)")
    return path


MakeCoco = Callable[..., Path]


@pytest.fixture
def make_coco(tmp_path: Path) -> MakeCoco:
    """Build a COCO-layout dataset under tmp_path.

    ``make_coco(images={"a.png": array_or_PIL_or_bytes}, anns=[...], sizes={"a.png": (w, h)})``;
    image ids follow the order of ``images`` (1, 2, ...); each ann needs ``image_id`` and
    ``bbox``. Returns the root; the split is ``val2017``.
    """

    def build(
        images: dict[str, Any],
        anns: list[dict[str, Any]] | None = None,
        sizes: dict[str, tuple[int, int]] | None = None,
        categories: list[dict[str, Any]] | None = None,
        split: str = "val2017",
    ) -> Path:
        root = tmp_path / "coco"
        entries = []
        for i, (name, content) in enumerate(images.items(), 1):
            path = root / split / name
            if isinstance(content, bytes):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                w, h = (sizes or {}).get(name, (10, 10))
            elif content is None:  # listed in the JSON, no file
                w, h = (sizes or {}).get(name, (10, 10))
            else:
                write_image(path, content)
                w, h = (
                    (content.shape[1], content.shape[0])
                    if isinstance(content, np.ndarray)
                    else content.size
                )
                w, h = (sizes or {}).get(name, (w, h))
            entries.append({"id": i, "file_name": name, "width": w, "height": h})
        ann_file = root / "annotations" / f"instances_{split}.json"
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(coco_dict(entries, anns or [], categories)))
        return root

    return build


@pytest.fixture(scope="session", params=[1, 2], ids=["v1", "v2"])
def synthetic_root(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, dict[str, Any]]:
    """A 200-image synthetic benchmark (160 train / 40 val, 256 px, seed 0) of each version and
    its stats (``stats["params"]["version"]``)."""
    from study.data.synthetic import generate

    root = tmp_path_factory.mktemp(f"synthetic-v{request.param}")
    stats = generate(root, num_train=160, num_val=40, img_size=256, seed=0, version=request.param)
    return root, stats
