"""study verify (study/eval/verify.py): each metrics file read once, re-scored from its
detections, its recorded git revision reported when the code was uncommitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from study.eval.coco_eval import coco_metrics, write_detections
from study.eval.verify import Verdict, verify, verify_file


def _commit_run(
    results: Path, coco_root: Path, coco_gt, seed: int, dets: list[dict[str, Any]], revision: str
) -> Path:
    """A run folder as ``study evaluate`` leaves it: metrics.json scored from the detections
    committed beside it, with the meta verify reads."""
    run = results / "fusion" / "asff" / f"seed{seed}"
    run.mkdir(parents=True)
    write_detections(run / "detections.json.gz", dets)
    metrics = coco_metrics(coco_gt, dets, [1, 2, 3], "pycocotools")
    metrics.pop("summary")
    meta = {
        "dataset": {
            "root": str(coco_root),
            "split": "val2017",
            "ann_file": str(coco_root / "annotations" / "instances_val2017.json"),
            "num_images": 3,
        },
        "protocol": {"dropped_gt": "score"},
        "coco_backend": "pycocotools",
        "detections": "detections.json.gz",
        "git_revision": revision,
    }
    path = run / "metrics.json"
    path.write_text(json.dumps({**metrics, "meta": meta}))
    return path


def test_verify_reads_each_file_once_and_names_dirty_revisions(
    tmp_path: Path, coco_root: Path, coco_gt, perfect, monkeypatch
) -> None:
    results = tmp_path / "results"
    clean = _commit_run(results, coco_root, coco_gt, 0, perfect, "abc123")
    dirty = _commit_run(results, coco_root, coco_gt, 1, perfect[:2], "def456-dirty")
    reads: list[Path] = []
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.suffix == ".json" and results in self.parents:
            reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    text, ok = verify(results, workers=1)
    assert ok and sorted(reads) == [clean, dirty]  # each metrics file parsed once
    monkeypatch.undo()
    assert verify(results, workers=2) == (text, ok)  # the same report from two processes
    lines = text.splitlines()
    assert lines[0] == f"ok    {clean}: 7 metrics equal exactly (AP 1.0000)"
    assert lines[1].startswith(f"ok    {dirty}: 7 metrics equal exactly (AP 0.")
    assert lines[2].startswith("2 of 2 metrics files re-scored") and "all identical" in lines[2]
    assert lines[3] == "warning: results made by uncommitted code: def456-dirty"
    assert len(lines) == 4


def test_verify_file_returns_the_revision_it_read(
    tmp_path: Path, coco_root: Path, coco_gt, perfect
) -> None:
    from study.eval.verify import _GroundTruth

    path = _commit_run(tmp_path, coco_root, coco_gt, 0, perfect, "abc123-dirty")
    ground_truth = _GroundTruth()
    verdict = verify_file(path, ground_truth)
    assert (verdict.ok, verdict.git_revision) == (True, "abc123-dirty")
    data = json.loads(path.read_text())
    data["AP50"] += 1e-9  # a changed number fails; the revision is still reported
    path.write_text(json.dumps(data))
    verdict = verify_file(path, ground_truth)
    assert not verdict.ok and verdict.git_revision == "abc123-dirty"
    assert verdict.line.startswith(f"FAIL  {path}: AP50 committed 1.000000001, re-scored 1.0")
    path.write_text("{oops")
    verdict = verify_file(path, ground_truth)
    assert verdict == Verdict(False, verdict.line, None)
    assert verdict.line.startswith(f"FAIL  {path}: not a readable study metrics file")


def test_verify_without_metrics_files_is_an_error(tmp_path: Path) -> None:
    from study.errors import StudyError

    with pytest.raises(StudyError, match="no metrics files for fusion/asff"):
        verify(tmp_path, ["fusion/asff"])
