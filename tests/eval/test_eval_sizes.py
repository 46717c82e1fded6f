"""Evaluation at several test sizes (study/eval/sizes.py): sizes checked, files per size, the
main size not scored twice, an earlier run's files kept when a run fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import study.eval.sizes as sizes_mod
from study.errors import ConfigError, StudyError
from study.eval.sizes import check_sizes, evaluate_test_sizes, read_test_sizes


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
        (Path(out_dir) / "detections.json").write_text("[]")
        return out

    return evaluate, calls


def test_every_size_but_the_main_one_is_written(tmp_path: Path, monkeypatch) -> None:
    fake, calls = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    datasets = []
    out = evaluate_test_sizes(
        None,
        _cfg([160, 64, 96]),
        lambda c: datasets.append(c["eval"]["img_size"]),
        "cpu",
        tmp_path,
        {"weights": "w.pt"},
    )
    assert calls == [64, 160] and datasets == [64, 160] and sorted(out) == [64, 160]
    assert sorted(p.name for p in (tmp_path / "test_sizes").iterdir()) == ["s160.json", "s64.json"]
    assert sorted(p.name for p in (tmp_path / "test_sizes_detections").iterdir()) == [
        "s160.json",
        "s64.json",
    ]
    assert json.loads((tmp_path / "test_sizes" / "s64.json").read_text())["meta"]["weights"]
    # the main size comes from metrics.json
    (tmp_path / "metrics.json").write_text(
        json.dumps({"AP": 0.5, "meta": {"protocol": {"img_size": 96}}})
    )
    assert list(read_test_sizes(tmp_path)) == [64, 96, 160]
    assert read_test_sizes(tmp_path)[96]["AP"] == 0.5


def test_a_failed_run_keeps_the_earlier_files(tmp_path: Path, monkeypatch) -> None:
    fake, _ = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    evaluate_test_sizes(None, _cfg([64, 160]), lambda c: None, "cpu", tmp_path)
    before = (tmp_path / "test_sizes" / "s64.json").read_text()
    failing, _ = _fake_evaluate(fail_at=160)
    monkeypatch.setattr(sizes_mod, "evaluate", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_test_sizes(None, _cfg([64, 160], main=128), lambda c: None, "cpu", tmp_path)
    assert (tmp_path / "test_sizes" / "s64.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_sizes", "test_sizes_detections"]


def test_read_test_sizes_names_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "test_sizes").mkdir()
    (tmp_path / "test_sizes" / "s64.json").write_text("{oops")
    with pytest.raises(StudyError, match="s64.json: invalid JSON"):
        read_test_sizes(tmp_path)
    (tmp_path / "test_sizes" / "s64.json").write_text('{"AP": 1}')
    with pytest.raises(StudyError, match="s64.json: no meta.protocol.img_size"):
        read_test_sizes(tmp_path)
