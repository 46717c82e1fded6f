"""Evaluation of a run at its size and at several test sizes (study/eval/sizes.py): sizes checked
first, files per size, the main size not scored twice, an earlier run's files all kept when a run
fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import study.eval.sizes as sizes_mod
from study.errors import ConfigError, StudyError
from study.eval.sizes import check_sizes, evaluate_run, read_test_sizes


def test_check_sizes_sorts_and_rejects_bad_sizes() -> None:
    assert check_sizes([160, 64, 96, 64], "x") == [64, 96, 160]
    for bad in ([], [100], [0], [-32], ["big"], [True], 608):
        with pytest.raises(ConfigError, match="eval.test_sizes"):
            check_sizes(bad, "eval.test_sizes")


def _cfg(sizes: list[int], main: int = 96) -> dict[str, Any]:
    return {"eval": {"img_size": main, "test_sizes": sizes}, "data": {}}


def _fake_evaluate(fail_at: int | None = None):
    calls: list[int] = []

    def evaluate(model, dataset, cfg, device, out_dir=None, extra_meta=None):
        size = cfg["eval"]["img_size"]
        calls.append(size)
        if size == fail_at:
            raise RuntimeError("boom")
        meta = {"protocol": {"img_size": size}, **(extra_meta or {})}
        out = {"AP": size / 1000, "meta": meta}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps(out))
        (Path(out_dir) / "detections.json.gz").write_text("[]")
        return out

    return evaluate, calls


def test_every_size_but_the_main_one_is_written(tmp_path: Path, monkeypatch) -> None:
    fake, calls = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    datasets = []
    out = evaluate_run(
        None,
        _cfg([160, 64, 96]),
        lambda c: datasets.append(c["eval"]["img_size"]),
        "main dataset",
        "cpu",
        tmp_path,
        {"weights": "w.pt"},
        test_sizes=True,
    )
    assert calls == [96, 64, 160] and datasets == [64, 160] and out["AP"] == 0.096
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "detections.json.gz",
        "metrics.json",
        "test_sizes",
    ]
    assert sorted(p.name for p in (tmp_path / "test_sizes").iterdir()) == [
        "s160.detections.json.gz",
        "s160.json",
        "s64.detections.json.gz",
        "s64.json",
    ]
    meta64 = json.loads((tmp_path / "test_sizes" / "s64.json").read_text())["meta"]
    assert meta64["weights"] == "w.pt" and meta64["detections"] == "s64.detections.json.gz"
    # the main size comes from metrics.json
    assert list(read_test_sizes(tmp_path)) == [64, 96, 160]
    assert read_test_sizes(tmp_path)[96]["AP"] == 0.096


def test_a_failed_run_keeps_the_earlier_files(tmp_path: Path, monkeypatch) -> None:
    fake, _ = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    evaluate_run(None, _cfg([64, 160]), lambda c: None, None, "cpu", tmp_path, test_sizes=True)
    before = {p.name: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    failing, calls = _fake_evaluate(fail_at=160)
    monkeypatch.setattr(sizes_mod, "evaluate", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_run(
            None, _cfg([64, 160], main=128), lambda c: None, None, "cpu", tmp_path, test_sizes=True
        )
    assert calls == [128, 64, 160]  # the main size and 64 were evaluated, then 160 failed
    # nothing of the failed run reached the folder: metrics.json and every size as before
    assert {p.name: p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "detections.json.gz",
        "metrics.json",
        "test_sizes",
    ]


def test_a_bad_size_is_refused_before_any_evaluation(tmp_path: Path, monkeypatch) -> None:
    fake, calls = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    with pytest.raises(ConfigError, match="multiples of 32"):
        evaluate_run(None, _cfg([64, 100]), lambda c: None, None, "cpu", tmp_path, test_sizes=True)
    assert calls == [] and not list(tmp_path.iterdir())


def test_read_test_sizes_names_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "test_sizes").mkdir()
    (tmp_path / "test_sizes" / "s64.json").write_text("{oops")
    with pytest.raises(StudyError, match="s64.json: invalid JSON"):
        read_test_sizes(tmp_path)
    (tmp_path / "test_sizes" / "s64.json").write_text('{"AP": 1}')
    with pytest.raises(StudyError, match="s64.json: no meta.protocol.img_size"):
        read_test_sizes(tmp_path)
