"""study bench (study/eval/bench.py): settings, the timing loop's breakdown and interleaving,
the overhead ratios, the shared NMS candidate set, FLOPs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import study.eval.bench as bench
from study.errors import ConfigError
from study.eval.bench import (
    Subject,
    bench_setting,
    bench_settings,
    count_flops,
    fixed_candidates,
    overhead_rows,
    percentile,
)
from study.eval.postprocess import postprocess

EV = {"conf_thresh": 0.001, "nms_thresh": 0.65, "max_dets": 100}


def test_settings_defaults_params_and_overrides() -> None:
    s = bench_settings({})
    assert s["runs"] >= 100 and s["dtypes"] == ["fp32", "fp16", "bf16"]
    s = bench_settings({"bench": {"runs": 300}}, ["bench.rounds=5", "bench.sizes=[96, 64]"])
    assert (s["runs"], s["rounds"], s["sizes"]) == (300, 5, [64, 96])


@pytest.mark.parametrize(
    ("params", "overrides", "match"),
    [
        ({"bench": {"run": 3}}, [], "unknown keys \\['run'\\]"),
        ({"bench": {"runs": "many"}}, [], "bench.runs: expected an integer >= 1, got 'many'"),
        ({"bench": {"runs": 0}}, [], "bench.runs"),
        ({}, ["bench.warmup=-1"], "bench.warmup"),
        ({}, ["bench.dtypes=[fp8]"], "bench.dtypes"),
        ({}, ["bench.modes=compiled"], "bench.modes"),
        (
            {},
            ["bench.sizes=[100]"],
            r"^params: bench.sizes\[0\] must be a multiple of 32, got 100$",
        ),
        ({}, ["bench.sizes=[64, 0]"], r"^params: bench.sizes\[1\] must be >= 1, got 0$"),
        ({"bench": {"runs": 5, "rounds": 10}}, [], "rounds: cannot exceed"),
        ({}, ["eval.img_size=64"], "only bench.KEY=VALUE"),
        ({"bench": [1, 2]}, [], "expected a mapping"),
    ],
)
def test_bad_settings_name_the_key(params, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        bench_settings(params, overrides)


def test_percentile_is_numpys() -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_overhead_ratio_and_its_spread_over_rounds() -> None:
    ref = [10.0, 11.0, 10.0, 20.0, 21.0, 20.0]  # round 1 ran on a slower machine
    model = [15.0, 16.5, 15.0, 30.0, 30.0, 60.0]
    rounds = [0, 0, 0, 1, 1, 1]
    times = {
        "a": {"total": ref, "forward": ref, "round": rounds},
        "b": {"total": model, "forward": model, "round": rounds},
    }
    (row,) = overhead_rows(times, "a", 2)
    assert row["model"] == "b" and row["reference"] == "a"
    assert row["ratio_round_min"] == pytest.approx(1.5)  # both rounds: median 15/10 and 30/20
    assert row["ratio_round_max"] == pytest.approx(1.5)
    assert row["ratio"] == pytest.approx(np.median(model) / np.median(ref))


def test_fixed_candidates_are_shared_and_pass_the_threshold() -> None:
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]])}, {"boxes": torch.zeros(0, 4)}]
    a = fixed_candidates(targets, 64, 5, per_image=200)
    b = fixed_candidates(targets, 64, 5, per_image=200)
    assert [t.shape for t in a] == [(1, 200, 10)] * 2
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    scores = a[0][0, :, 4] * a[0][0, :, 5:].max(-1).values
    assert (scores >= 0.001).all()
    assert 0 < len(postprocess(a[0])[0]["scores"]) < 200  # NMS removes some, keeps some


def test_flops_of_one_convolution() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, 32) == 2 * 8 * 3 * 9 * 32 * 32


def _subjects() -> list[Subject]:
    from study.models import build_model

    out = []
    for name in ("none", "asff"):
        torch.manual_seed(0)
        model = build_model(
            name if name == "asff" else "baseline", num_classes=3, width=0.125, depth=0.34
        ).eval()
        out.append(Subject(f"fusion/{name}", model, "random", None, False))
    return out


SETTINGS = {"runs": 6, "rounds": 3, "warmup": 1, "throughput_batch": 3, "throughput_runs": 1}


def test_interleaved_breakdown_on_real_models() -> None:
    subjects = _subjects()
    images = torch.rand(2, 3, 64, 64)
    times, extra = bench_setting(
        subjects, images, None, torch.device("cpu"), "fp32", "eager", SETTINGS, EV
    )
    for s in subjects:
        t = times[s.name]
        assert len(t["total"]) == 6 and t["round"] == [0, 0, 1, 1, 2, 2]
        for f, d, m, total in zip(t["forward"], t["decode"], t["nms"], t["total"], strict=True):
            assert min(f, d, m) > 0 and total == pytest.approx(f + d + m)
        assert extra[s.name]["throughput"] > 0
        assert 0 < extra[s.name]["detections"] <= extra[s.name]["candidates"]


def test_fixed_nms_input_replaces_the_models_boxes() -> None:
    subjects = _subjects()
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]])}] * 2
    cands = fixed_candidates(targets, 64, 3, per_image=50)
    _, extra = bench_setting(
        subjects, images, cands, torch.device("cpu"), "fp32", "eager", SETTINGS, EV
    )
    assert extra["fusion/none"]["candidates"] == extra["fusion/asff"]["candidates"] == 50


def test_fast_path_uses_compiled_functions_and_one_batched_nms(monkeypatch) -> None:
    """The fast path's plumbing (torch.compile around forward and decode, the batched NMS);
    inductor itself is left out here (minutes on 2 cores): compile with the eager backend."""
    compiled = []
    real_compile = torch.compile

    def eager_compile(fn, mode=None, **kw):
        compiled.append(mode)
        return real_compile(fn, backend="eager")

    monkeypatch.setattr(bench.torch, "compile", eager_compile)
    subjects = _subjects()[:1]
    times, _ = bench_setting(
        subjects, torch.rand(2, 3, 64, 64), None, torch.device("cpu"), "fp32", "fast", SETTINGS, EV
    )
    assert compiled == [None, None]  # forward and decode; CUDA graphs only on CUDA
    assert subjects[0].fns["nms"] is bench.postprocess_batched
    assert len(times["fusion/none"]["total"]) == 6


def test_candidates_and_detections_follow_the_eval_section() -> None:
    """The untimed counts score and suppress boxes as postprocess does, with the ``eval``
    section's thresholds and cap."""
    nms_input = torch.tensor(
        [
            [
                [50.0, 50.0, 20.0, 20.0, 0.9, 0.9, 0.1, 0.0],  # class 0, score 0.81
                [52.0, 50.0, 20.0, 20.0, 0.8, 0.9, 0.1, 0.0],  # class 0, 0.72, IoU 0.82: removed
                [52.0, 50.0, 20.0, 20.0, 0.8, 0.1, 0.9, 0.0],  # class 1, 0.72: kept
                [10.0, 10.0, 4.0, 4.0, 0.01, 0.05, 0.0, 0.0],  # 0.0005: below the threshold
            ]
        ]
    )
    (subject,) = _subjects()[:1]
    x = torch.rand(1, 3, 64, 64)
    cpu = torch.device("cpu")
    assert bench._candidates(subject, x, nms_input, EV, None, cpu) == (3, 2)
    capped = {**EV, "max_dets": 1}
    assert bench._candidates(subject, x, nms_input, capped, None, cpu) == (3, 1)
    strict = {**EV, "conf_thresh": 0.75}
    assert bench._candidates(subject, x, nms_input, strict, None, cpu) == (1, 1)
    loose = {**EV, "nms_thresh": 0.9}
    assert bench._candidates(subject, x, nms_input, loose, None, cpu) == (3, 3)


def test_run_bench_writes_a_row_per_model_size_dtype_and_mode(tmp_path, monkeypatch) -> None:
    """The whole command on two small models (images and models stubbed): sizes from the
    config's test sizes plus its eval size, fp32 only on the CPU, every row's columns."""
    cfg = {
        "name": "bench",
        "profile": "tiny",
        "eval": {**EV, "device": "cpu", "img_size": 96, "test_sizes": [64, 96]},
    }
    sizes_seen = []

    def images(cfg_, size, count):
        sizes_seen.append(size)
        return torch.rand(2, 3, size, size), [{"boxes": torch.zeros(0, 4)}] * 2

    monkeypatch.setattr(bench, "load_subjects", lambda *a: (_subjects(), cfg))
    monkeypatch.setattr(bench, "bench_images", images)
    overrides = [
        "bench.runs=2",
        "bench.rounds=2",
        "bench.warmup=0",
        "bench.throughput_runs=1",
        "bench.throughput_batch=2",
        "bench.dtypes=[fp32, bf16]",
    ]
    out = tmp_path / "bench.csv"
    paths = bench.run_bench(str(tmp_path / "none.yaml"), [], None, overrides, out)
    assert paths == [out, tmp_path / "bench_overhead.csv"] and sizes_seen == [64, 96]
    rows = pd.read_csv(out)
    assert list(zip(rows["model"], rows["size"], rows["dtype"], strict=True)) == [
        ("fusion/none", 64, "fp32"),
        ("fusion/asff", 64, "fp32"),
        ("fusion/none", 96, "fp32"),
        ("fusion/asff", 96, "fp32"),
    ]
    assert (rows["runs"] == 2).all() and (rows["rounds"] == 2).all() and (rows["images"] == 2).all()
    assert (rows["nms_input"] == "own").all() and (rows["profile"] == "tiny").all()
    assert rows["flops"].iloc[2] > rows["flops"].iloc[0] > 0  # 96 px costs more than 64 px
    ratios = pd.read_csv(tmp_path / "bench_overhead.csv")
    assert list(zip(ratios["model"], ratios["reference"], ratios["size"], strict=True)) == [
        ("fusion/asff", "fusion/none", 64),
        ("fusion/asff", "fusion/none", 96),
    ]
    assert (ratios["ratio"] > 0).all() and (ratios["rounds"] == 2).all()


def test_run_bench_refuses_a_bad_test_size_before_timing(tmp_path, monkeypatch) -> None:
    cfg = {
        "name": "fusion/none",
        "eval": {**EV, "device": "cpu", "img_size": 96, "test_sizes": [100]},
    }
    monkeypatch.setattr(bench, "load_subjects", lambda *a: (_subjects(), cfg))
    monkeypatch.setattr(bench, "bench_images", lambda *a: pytest.fail("timed a bad size"))
    with pytest.raises(
        ConfigError,
        match=r"^config of fusion/none: \(eval.test_sizes \+ \[eval.img_size\]\)\[0\] must be a "
        r"multiple of 32, got 100$",
    ):
        bench.run_bench(str(tmp_path / "none.yaml"), [], None, [], tmp_path / "bench.csv")
    assert not list(tmp_path.iterdir())


def test_sizes_are_interleaved_in_the_rounds_like_the_models(monkeypatch) -> None:
    """Every round times every size and every model (both orders rotating), so that drift
    between sizes cannot fold the latency curve back; each size's numbers are its own."""
    calls: list[tuple[int, str]] = []
    real = bench.time_image

    def record(subject, x, *args, **kw):
        calls.append((int(x.shape[-1]), subject.name))
        return real(subject, x, *args, **kw)

    monkeypatch.setattr(bench, "time_image", record)
    subjects = _subjects()
    images = {64: torch.rand(2, 3, 64, 64), 96: torch.rand(2, 3, 96, 96)}
    settings = {**SETTINGS, "warmup": 0}
    timed = bench.bench_sizes(
        subjects, images, {64: None, 96: None}, torch.device("cpu"), "fp32", "eager", settings, EV
    )
    per_round = 2  # 6 runs over 3 rounds
    rounds = [calls[i : i + 2 * 2 * per_round] for i in range(0, len(calls), 8)]
    assert len(rounds) == 3
    assert [r[0][0] for r in rounds] == [64, 96, 64]  # the size order rotates
    assert [r[0][1] for r in rounds] == ["fusion/none", "fusion/asff", "fusion/none"]
    for r in rounds:  # every size and model in every round
        assert {(z, n) for z, n in r} == {(z, s.name) for z in (64, 96) for s in subjects}
    for z in (64, 96):
        times, extra = timed[z]
        assert times["fusion/asff"]["round"] == [0, 0, 1, 1, 2, 2]
        assert extra["fusion/asff"]["throughput"] > 0
