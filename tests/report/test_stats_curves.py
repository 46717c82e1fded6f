"""Seed intervals (Student t, Holm), the convergence rule, the budget curve and anchor usage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.anchors import ANCHOR_SETS, fit_per_level, kmeans_anchors
from study.report.anchors import anchor_usage
from study.report.curves import budget_curve, convergence, read_curves
from study.report.stats import holm_levels, seed_intervals, t_interval


def test_t_interval_matches_a_hand_computed_case() -> None:
    # diffs 1, 2, 3: mean 2, s = 1, se = 1 / sqrt(3); t(0.975, 2 df) = 4.302653
    mean, lo, hi, p = t_interval([1.0, 2.0, 3.0])
    half = 4.302653 / np.sqrt(3)
    assert mean == 2.0 and lo == pytest.approx(2 - half, abs=1e-5)
    assert hi == pytest.approx(2 + half, abs=1e-5)
    # t = 2 / (1 / sqrt 3) = 3.4641, two-sided p with 2 df = 0.07418
    assert p == pytest.approx(0.07418, abs=1e-4)
    # a wider level (alpha 0.01): t(0.995, 2) = 9.924843
    _, lo99, hi99, _ = t_interval([1.0, 2.0, 3.0], alpha=0.01)
    assert hi99 - 2 == pytest.approx(9.924843 / np.sqrt(3), abs=1e-5)
    assert np.isnan(t_interval([1.0])[1]) and t_interval([1.0])[3] == 1.0  # one seed: none


def test_holm_steps_down_and_stops_at_the_first_non_rejection() -> None:
    # m = 3: the smallest p is tested at 0.05/3, the next at 0.05/2, the last at 0.05
    assert holm_levels([0.01, 0.02, 0.04]) == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])
    # the second smallest (0.03) fails at 0.025: the rest are held at 0.05 / m
    assert holm_levels([0.001, 0.03, 0.04]) == pytest.approx([0.05 / 3, 0.05 / 2, 0.05 / 3])
    assert holm_levels([0.5, 0.001]) == pytest.approx([0.05, 0.05 / 2])


def test_seed_intervals_are_consistent_with_holm_and_count_signs() -> None:
    rows = pd.DataFrame(
        {
            "family": ["t"] * 3,
            "metric": ["AP"] * 3,
            "per_seed": [[0.30, 0.31, 0.29], [0.05, -0.02, 0.04], [0.0, 0.0, 0.0]],
        }
    )
    out = seed_intervals(rows)
    assert list(out["positive"]) == [3, 2, 0] and list(out["seeds"]) == [3, 3, 3]
    assert bool(out.loc[0, "beyond_noise"]) and out.loc[0, "lo"] > 0
    assert not out.loc[1, "beyond_noise"] and out.loc[1, "lo"] <= 0 <= out.loc[1, "hi"]
    assert not out.loc[2, "beyond_noise"]
    # an unadjusted 95 % interval is narrower than the Holm-adjusted one of the same row
    _, lo, hi, _ = t_interval(rows.loc[1, "per_seed"])
    assert out.loc[1, "hi"] - out.loc[1, "lo"] > hi - lo


def _curve(folder: Path, exp: str, seed: int, aps: list[float]) -> None:
    run = folder / exp / f"seed{seed}"
    run.mkdir(parents=True)
    n = len(aps) - 1
    points = [
        {"epoch": i, "iteration": 100 * i, "fraction": i / n, "AP": ap, "images": 10}
        for i, ap in enumerate(aps)
    ]
    (run / "curve.json").write_text(json.dumps(points))


def test_convergence_rule_and_budget_curve(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        _curve(tmp_path, "fusion/none", seed, [0.0, 0.30, 0.40, 0.45, 0.455 + 0.001 * seed])
        _curve(tmp_path, "fusion/asff", seed, [0.0, 0.40, 0.45, 0.48, 0.52 + 0.01 * seed])
    curves = read_curves(tmp_path, ["fusion/none", "fusion/asff"], [0, 1, 2])
    conv = convergence(curves)
    assert conv["fusion/none"]["converged"] and conv["fusion/none"]["gain"] == pytest.approx(0.6)
    assert not conv["fusion/asff"]["converged"]  # +5.0 points over the last quarter
    budget = budget_curve(curves, [("fusion/asff", "fusion/none")])
    end = budget.sort_values("iteration").iloc[-1]
    assert end["delta"] == pytest.approx(100 * np.mean([0.065, 0.074, 0.083]))
    assert end["positive"] == 3 and end["lo"] > 0 and len(budget) == 5
    assert read_curves(tmp_path, ["fusion/sum"], [0]).empty
    # a run that never learned is flat too: not a plateau once min_ap says it did not learn
    for seed in (0, 1, 2):
        _curve(tmp_path, "fusion/sum", seed, [0.0, 0.001, 0.002, 0.002, 0.003])
    flat = convergence(read_curves(tmp_path, ["fusion/sum", "fusion/none"], [0, 1, 2]), min_ap=0.1)
    assert flat["fusion/sum"]["gain"] < 1.0 and not flat["fusion/sum"]["learned"]
    assert not flat["fusion/sum"]["converged"] and flat["fusion/none"]["converged"]


def test_anchor_usage_counts_each_box_once_at_its_best_anchor() -> None:
    wh = np.array([[10.0, 13.0], [11.0, 12.0], [116.0, 90.0], [60.0, 118.0]])
    usage = anchor_usage({"train": wh}, "yolov3").set_index("anchor")
    assert usage["train boxes"].sum() == 4
    assert usage.loc["10x13", "train boxes"] == 2 and usage.loc["116x90", "stride"] == 32
    assert usage.loc["59x119", "train boxes"] == 1 and usage.loc["373x326", "train boxes"] == 0


def test_the_usage_table_assigns_boxes_as_the_loss_does() -> None:
    import torch

    from study.anchors import best_anchors, resolve_anchors
    from study.engine.loss import wh_iou as loss_wh_iou

    rng = np.random.default_rng(1)
    wh = rng.uniform(2, 300, size=(500, 2))
    wh[:3] = [[10, 13], [116, 90], [30, 61]]  # exact anchors: ties broken alike
    prior = torch.tensor(resolve_anchors("yolov3"), dtype=torch.float64)
    expected = loss_wh_iou(torch.as_tensor(wh)[:, None, :], prior[None]).argmax(dim=1).numpy()
    assert (best_anchors(wh, "yolov3") == expected).all()


def test_anchor_fits_are_sorted_and_named_sets_are_valid() -> None:
    rng = np.random.default_rng(0)
    wh = np.exp(rng.uniform(np.log(8), np.log(100), size=(300, 1))) * rng.uniform(
        0.7, 1.3, size=(300, 2)
    )
    anchors = fit_per_level(wh)
    areas = [w * h for w, h in anchors]
    assert len(anchors) == 9 and areas == sorted(areas)
    km = kmeans_anchors(wh, 3)
    assert km.shape == (3, 2) and (np.diff(km.prod(axis=1)) >= 0).all()
    for pairs in ANCHOR_SETS.values():
        assert len(pairs) == 9 and all(w > 0 and h > 0 for w, h in pairs)
    with pytest.raises(ValueError, match="at least 9 boxes"):
        fit_per_level(wh[:5])
