"""Evaluation of a run at its size and at several test sizes (study/eval/sizes.py): sizes checked
first, files per size, the main size not scored twice, an earlier run's files all kept when a run
fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import study.eval.sizes as sizes_mod
from study.config import check_keys, check_size_list
from study.errors import ConfigError, StudyError
from study.eval.sizes import evaluate_run, read_test_sizes


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([], "src: eval.test_sizes must be a non-empty list, got []"),
        (608, "src: eval.test_sizes must be a list, got 608 (int)"),
        ([64, 100], "src: eval.test_sizes[1] must be a multiple of 32, got 100"),
        ([16], "src: eval.test_sizes[0] must be a multiple of 32, got 16"),
        ([0], "src: eval.test_sizes[0] must be >= 1, got 0"),
        ([-32], "src: eval.test_sizes[0] must be >= 1, got -32"),
        (["big"], "src: eval.test_sizes[0] must be an integer, got 'big' (str)"),
        ([True], "src: eval.test_sizes[0] must be an integer, got true (bool)"),
        ([64.0], "src: eval.test_sizes[0] must be an integer, got 64.0 (float)"),
    ],
)
def test_size_lists_are_refused_with_the_config_wording(sizes, message) -> None:
    with pytest.raises(ConfigError) as exc:
        check_size_list(sizes, "eval.test_sizes", "src")
    assert str(exc.value) == message


def test_size_lists_are_sorted_and_checked_as_config_values() -> None:
    assert check_size_list([160, 64, 96, 64], "x", "src") == [64, 96, 160]
    assert check_size_list((32,), "x", "src") == [32]
    # the config loader words a bad test size the same way (one rule: study.config's size rule)
    base = {"eval": {"test_sizes": [320]}}
    for bad in ([64, 100], [0]):
        with pytest.raises(ConfigError) as loaded:
            check_keys({"eval": {"test_sizes": bad}}, base, "src")
        with pytest.raises(ConfigError) as checked:
            check_size_list(bad, "eval.test_sizes", "src")
        assert str(checked.value) == str(loaded.value)


def _cfg(sizes: list[int], main: int = 96) -> dict[str, Any]:
    return {"name": "fusion/asff", "eval": {"img_size": main, "test_sizes": sizes}, "data": {}}


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


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([64, 100], "eval.test_sizes[1] must be a multiple of 32, got 100"),
        ([16, 64], "eval.test_sizes[0] must be a multiple of 32, got 16"),
        ([0], "eval.test_sizes[0] must be >= 1, got 0"),
        ("64", "eval.test_sizes must be a list, got '64' (str)"),
    ],
)
def test_a_bad_size_is_refused_before_any_evaluation(
    tmp_path: Path, monkeypatch, bad, message
) -> None:
    """``study evaluate --test-sizes`` with a bad size: refused before any inference, and the
    earlier run's files (metrics.json first) stay byte for byte as they were."""
    fake, calls = _fake_evaluate()
    monkeypatch.setattr(sizes_mod, "evaluate", fake)
    evaluate_run(None, _cfg([64, 160]), lambda c: None, None, "cpu", tmp_path, test_sizes=True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    metrics = (tmp_path / "metrics.json").read_bytes()
    assert json.loads(metrics)["AP"] == 0.096 and len(before) == 6
    calls.clear()
    datasets: list[int] = []
    with pytest.raises(ConfigError) as exc:
        evaluate_run(
            None,
            _cfg(bad, main=128),
            lambda c: datasets.append(c["eval"]["img_size"]),
            None,
            "cpu",
            tmp_path,
            test_sizes=True,
        )
    assert str(exc.value) == f"config of fusion/asff: {message}"
    assert calls == [] and datasets == []  # nothing evaluated, no dataset built
    assert (tmp_path / "metrics.json").read_bytes() == metrics
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_read_test_sizes_names_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "test_sizes").mkdir()
    (tmp_path / "test_sizes" / "s64.json").write_text("{oops")
    with pytest.raises(StudyError, match="s64.json: invalid JSON"):
        read_test_sizes(tmp_path)
    (tmp_path / "test_sizes" / "s64.json").write_text('{"AP": 1}')
    with pytest.raises(StudyError, match="s64.json: no meta.protocol.img_size"):
        read_test_sizes(tmp_path)
