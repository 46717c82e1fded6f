"""study bench (study/eval/bench.py): settings, the timing loop's breakdown and interleaving,
the overhead ratios, the shared NMS candidate set, FLOPs."""

from __future__ import annotations

import numpy as np
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
        ({}, ["bench.sizes=[100]"], "multiples of 32"),
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
