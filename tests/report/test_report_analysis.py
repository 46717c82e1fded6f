"""The analysis part of the report (study/report/analysis.py, figures.py, scorecard.py): tables
from the analysis stage's files, reproducible figures, and each claim's verdict rule."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.data.coco import read_annotation_file
from study.errors import StudyError
from study.report import analysis_report, build_report
from study.report.scorecard import (
    INCONCLUSIVE,
    NOT_REPLICATED,
    NOT_TESTED,
    REPLICATED,
    Evidence,
    scorecard,
)
from study.report.tables import latex_escape, to_latex
from study.utils import write_json

FUSIONS = ["none", "sum", "asff"]
SEEDS = [0, 1, 2]
CKPTS = (("init", 0.0), ("50%", 0.5), ("final", 1.0))


def _gradient_rows(value: float, per_level: tuple[float, ...] = (1.0, 1.0, 1.0)) -> pd.DataFrame:
    """The analysis's gradients.csv: at level k, checkpoint fraction f, the conflict share is
    value x per_level[k] x (0.5 + f / 2) and the cross-level norm a hundredth of it."""
    rows = []
    for ckpt, frac in CKPTS:
        for mode in ("full", "detached"):
            for level, factor in enumerate(per_level):
                for bucket in ("all", "small", "medium", "large"):
                    share = value * factor * (0.5 + frac / 2)
                    rows.append(
                        {
                            "checkpoint": ckpt,
                            "fraction": frac,
                            "mode": mode,
                            "level": level,
                            "bucket": bucket,
                            "locations": 0 if bucket == "large" and level == 2 else 40,
                            "own_norm_mean": 0.02,
                            "cross_norm_mean": share / 100,
                            "cosine_mean": -0.01,
                            "negative_cosine": 0.52,
                            "share_mean": share,
                            "w_others_mean": 0.3,
                        }
                    )
    return pd.DataFrame(rows)


def _agreement_rows(rates: dict[str, float]) -> pd.DataFrame:
    rows = []
    for ckpt, frac in CKPTS:
        for bucket, rate in rates.items():
            rows.append(
                {
                    "checkpoint": ckpt,
                    "fraction": frac,
                    "bucket": bucket,
                    "objects": 300,
                    "agree": int(300 * rate),
                    "rate": rate,
                    "chance": 1 / 3,
                    "w_assigned_mean": 0.5,
                }
            )
    return pd.DataFrame(rows)


def _write_analysis(
    results: Path, share: dict[str, float], with_maps: bool = True, with_weights: str = "asff"
) -> None:
    """The analysis files of every fusion of ``share`` (its conflict share) and seed; the fusion
    ``with_weights`` has agreement rows, weight bins and weight maps."""
    for fusion in share:
        for seed in SEEDS:
            folder = results / "fusion" / fusion / f"seed{seed}" / "analysis"
            folder.mkdir(parents=True)
            _gradient_rows(share[fusion] + 0.01 * seed).to_csv(
                folder / "gradients.csv", index=False
            )
            weighted = fusion == with_weights
            bins = pd.DataFrame(
                [
                    {
                        "mode": m,
                        "level": level,
                        "w_low": 0.1 * i,
                        "w_high": 0.1 * i + 0.1,
                        "locations": 5,
                        "cross_norm_mean": 0.005 - 0.0004 * i,
                        "share_mean": 0.5 - 0.04 * i,
                    }
                    for m in ("full", "detached")
                    for level in range(3)
                    for i in range(10)
                ]
                if weighted
                else [],
                columns=[
                    "mode",
                    "level",
                    "w_low",
                    "w_high",
                    "locations",
                    "cross_norm_mean",
                    "share_mean",
                ],
            )
            bins.to_csv(folder / "gradient_bins.csv", index=False)
            agree = _agreement_rows({"all": 0.6, "small": 0.9, "medium": 0.5, "large": 0.4})
            (agree if weighted else agree.iloc[0:0]).to_csv(folder / "agreement.csv", index=False)
            write_json(folder / "summary.json", {"images": 50})
            if weighted and with_maps:
                arrays = {
                    "indices": np.array([3]),
                    "image0": np.zeros((32, 32, 3), np.uint8),
                    "boxes0": np.array([[2.0, 2.0, 12.0, 20.0]]),
                    "labels0": np.array([0]),
                    "image_id0": np.array(7),
                }
                for k, g in enumerate((1, 2, 4)):
                    w = np.random.default_rng(k).dirichlet([1, 1, 1], size=(g, g))
                    arrays[f"weights0_level{k}"] = w.transpose(2, 0, 1).astype(np.float32)
                    arrays[f"activation0_level{k}"] = np.ones((g, g), np.float32)
                np.savez_compressed(folder / "maps.npz", **arrays)


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment": ["fusion/none"],
            "seed": [0],
            "profile": ["test"],
            "dataset": ["data/x"],
            "num_images": [50],
            "ann_file": [None],
        }
    )


def test_analysis_tables_and_figures(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _write_analysis(results, {"none": 0.0, "sum": 0.3, "asff": 0.1})
    params = {"fusions": FUSIONS, "seeds": SEEDS}
    paths, data = analysis_report(params, results, tmp_path / "t", tmp_path / "f", _runs())
    names = {p.name for p in paths}
    for stem in ("gradient_consistency", "gradient_checkpoints", "weight_agreement"):
        assert {f"{stem}.md", f"{stem}.tex", f"{stem}.csv"} <= names
    for fig in ("gradient_measures", "measures_vs_weight", "weight_maps_asff"):
        assert {f"{fig}.png", f"{fig}.svg"} <= names
    table = pd.read_csv(tmp_path / "t" / "gradient_consistency.csv")
    # per strategy, level and size, never pooled; a level-size cell without locations is left out
    assert len(table) == 3 * 12 - 3
    assert not ((table["level"] == 2) & (table["bucket"] == "large")).any()
    row = table[(table["strategy"] == "sum") & (table["level"] == 1) & (table["bucket"] == "all")]
    # seeds 0, 1, 2 add 0, 0.01, 0.02 to the share: the final share is the mean, std 0.01
    assert row["share_mean"].item() == pytest.approx(0.31)
    assert row["share_mean_std"].item() == pytest.approx(0.01)
    assert row["cross_norm_mean"].item() == pytest.approx(0.0031)  # unscaled in the CSV
    assert row["negative_cosine"].item() == pytest.approx(0.52)
    over = pd.read_csv(tmp_path / "t" / "gradient_checkpoints.csv").set_index(["strategy", "level"])
    assert over.loc[("sum", 0), "share_init"] == pytest.approx(0.155)
    assert over.loc[("sum", 0), "cross_final"] == pytest.approx(0.0031)
    md = (tmp_path / "t" / "gradient_consistency.md").read_text()
    assert "profile `test`" in md and "(50 analysed)" in md and "‖cross‖ ×10³" in md
    assert re.search(r"\| sum +\| +stride 16 \| +all \| +40 \| .* 3\.10 ± 0\.10 ", md)
    agree = pd.read_csv(tmp_path / "t" / "weight_agreement.csv").set_index("strategy")
    assert list(agree.index) == ["asff"] and agree.loc["asff", "rate_small"] == pytest.approx(0.9)
    # reproducible: the same inputs give byte-identical SVGs
    first = (tmp_path / "f" / "gradient_measures.svg").read_bytes()
    analysis_report(params, results, tmp_path / "t", tmp_path / "f", _runs())
    assert (tmp_path / "f" / "gradient_measures.svg").read_bytes() == first


def test_analysis_of_some_runs_only_is_an_error(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _write_analysis(results, {"none": 0.0, "sum": 0.3, "asff": 0.1})
    params = {"fusions": [*FUSIONS, "concat"], "seeds": SEEDS}
    (results / "fusion" / "concat" / "seed0").mkdir(parents=True)
    with pytest.raises(StudyError, match="analysis missing for some runs"):
        analysis_report(params, results, tmp_path / "t", tmp_path / "f", _runs())
    (results / "fusion" / "sum" / "seed1" / "analysis" / "gradients.csv").write_text("")
    with pytest.raises(StudyError, match="seed1/analysis/gradients.csv: not a readable CSV"):
        analysis_report({"fusions": FUSIONS, "seeds": SEEDS}, results, tmp_path, tmp_path, _runs())


def _evidence(
    shares: dict[str, list[float]],
    rates: dict[str, float],
    ratio=(1.1, 1.08, 1.12),
    per_level: dict[str, tuple[float, ...]] | None = None,
):
    """Evidence for the scorecard; ``shares``: each fusion's final share per seed (its cross
    norm a hundredth of it), ``per_level``: its factor per level; ``ratio``: asff / none
    latency (median, min, max over the bench's interleaved rounds)."""
    grads, agree = [], []
    for fusion, values in shares.items():
        factors = (per_level or {}).get(fusion, (1.0, 1.0, 1.0))
        for seed, v in enumerate(values):
            grads.append(_gradient_rows(v, factors).assign(fusion=fusion, seed=seed))
    for seed in SEEDS:
        agree.append(_agreement_rows(rates).assign(fusion="asff", seed=seed))
    runs = pd.DataFrame(
        [
            {
                "experiment": f"fusion/{f}",
                "seed": s,
                "img_size": 608,  # C4 is judged on a GPU at the paper's 608 px only
                "device": "cuda",
            }
            for f in ("none", "asff")
            for s in SEEDS
        ]
    )
    deltas = []
    for exp, metrics in {
        "fusion/asff": {
            "AP": (0.02, 0.01, 0.03),
            "APs": (0.03, 0.01, 0.05),
            "APm": (0.03, 0.01, 0.05),
            "APl": (0.0, -0.01, 0.01),
        },
        "fusion/sum": {"APl": (-0.02, -0.03, -0.01)},
        "fusion/concat": {"APl": (-0.01, -0.02, 0.005)},
    }.items():
        for m, (d, lo, hi) in metrics.items():
            deltas.append(
                {
                    "experiment": exp,
                    "reference": "fusion/none",
                    "metric": m,
                    "delta": d,
                    "lo": lo,
                    "hi": hi,
                    "within_noise": lo <= 0 <= hi,
                    "family": "table3",
                }
            )
    overhead = pd.DataFrame(
        [
            {
                "size": size,
                "dtype": "fp32",
                "mode": "eager",
                "model": "fusion/asff",
                "reference": "fusion/none",
                "ratio": ratio[0],
                "ratio_forward": ratio[0],
                "ratio_round_median": ratio[0],
                "ratio_round_min": ratio[1],
                "ratio_round_max": ratio[2],
                "rounds": 10,
                "device": "cuda (test GPU)",
            }
            for size in (416, 608)
        ]
    )
    converged = {"fusion/none": {"converged": True, "gain": 0.3}}
    return Evidence(
        None,
        pd.DataFrame(deltas),
        runs,
        None,
        pd.concat(grads),
        pd.concat(agree),
        0.1,
        overhead,
        converged,
    )


def _verdicts(ev: Evidence) -> dict[str, str]:
    return scorecard(ev).set_index("claim")["verdict"].to_dict()


def test_scorecard_rules() -> None:
    apart = {"asff": [0.10, 0.11, 0.12], "sum": [0.3, 0.31, 0.32], "concat": [0.2, 0.25, 0.3]}
    every = {"all": 0.6, "small": 0.9, "medium": 0.6, "large": 0.5}
    v = _verdicts(_evidence(apart, every))
    assert v["C2"] == REPLICATED and v["C4"] == REPLICATED
    assert v["C5"] == REPLICATED and v["C6"] == REPLICATED
    assert v["C3"] == INCONCLUSIVE  # concat's APl interval covers 0
    assert v["C1"].startswith(NOT_TESTED) and v["C7"].startswith(NOT_TESTED)
    # ASFF's cross-level gradient above sum and concat; overlapping with one of them
    above = {"asff": [0.4, 0.41, 0.42], "sum": [0.3, 0.31, 0.32], "concat": [0.2, 0.25, 0.3]}
    assert _verdicts(_evidence(above, every))["C5"] == NOT_REPLICATED
    overlap = {"asff": [0.1, 0.22, 0.35], "sum": [0.3, 0.31, 0.32], "concat": [0.2, 0.25, 0.3]}
    assert _verdicts(_evidence(overlap, every))["C5"] == INCONCLUSIVE
    # below at two levels, above at the third: every level must agree
    one_level = {"asff": (1.0, 1.0, 5.0)}
    assert _verdicts(_evidence(apart, every, per_level=one_level))["C5"] == INCONCLUSIVE
    card = scorecard(_evidence(apart, every)).set_index("claim")
    assert "stride 8: ‖cross‖ ×10³ asff 1.10, sum 3.10, concat 2.50" in card.loc["C5", "measured"]
    assert "asff cos < 0: 0.52" in card.loc["C5", "measured"]
    # one level picked everywhere: 100 % on small objects, 0 % on large ones
    constant = {"all": 0.55, "small": 1.0, "medium": 0.3, "large": 0.0}
    assert _verdicts(_evidence(apart, constant))["C6"] == NOT_REPLICATED
    # latency: every round outside the band, or the rounds reaching into it
    assert _verdicts(_evidence(apart, every, (1.5, 1.45, 1.52)))["C4"] == NOT_REPLICATED
    assert _verdicts(_evidence(apart, every, (0.94, 0.7, 1.21)))["C4"] == INCONCLUSIVE


def test_fusion_claims_need_a_converged_reference() -> None:
    apart = {"asff": [0.10, 0.11, 0.12], "sum": [0.3, 0.31, 0.32], "concat": [0.2, 0.25, 0.3]}
    ev = _evidence(apart, {"all": 0.6, "small": 0.9, "medium": 0.6, "large": 0.5})
    ev.converged = {"fusion/none": {"converged": False, "gain": 4.2}}
    v = _verdicts(ev)
    for claim in ("C2", "C3", "C5", "C6"):
        assert v[claim].startswith(NOT_TESTED) and "+4.2 AP" in v[claim]
    assert v["C4"] == REPLICATED  # a speed claim does not depend on convergence
    ev.converged = {
        "fusion/none": {"converged": False, "gain": 0.1, "learned": False, "final": 0.4}
    }
    assert "did not learn (AP 0.4" in _verdicts(ev)["C3"]
    ev.converged = None
    assert "convergence unknown" in _verdicts(ev)["C2"]


def test_c8_reads_the_end_of_the_budget_curve() -> None:
    ev = _evidence({"asff": [0.1] * 3, "sum": [0.2] * 3, "concat": [0.2] * 3}, {"all": 0.5})
    ev.converged = {e: {"converged": True, "gain": 0.2} for e in ("fusion/none", "fusion/asff")}

    def curve(end: tuple[float, float, float], best: float) -> pd.DataFrame:
        rows = [(100, best, best - 1, best + 1), (200, *end)]
        return pd.DataFrame(
            [
                {
                    "experiment": "fusion/asff",
                    "reference": "fusion/none",
                    "iteration": it,
                    "delta": d,
                    "lo": lo,
                    "hi": hi,
                    "positive": 3,
                    "seeds": 3,
                }
                for it, d, lo, hi in rows
            ]
        )

    ev.budget = curve((2.0, 0.5, 3.5), 4.0)
    assert _verdicts(ev)["C8"] == REPLICATED
    ev.budget = curve((0.5, -1.0, 2.0), 6.0)  # the gain faded into noise
    assert _verdicts(ev)["C8"] == NOT_REPLICATED
    ev.budget = curve((1.5, -1.0, 4.0), 2.0)
    assert _verdicts(ev)["C8"] == INCONCLUSIVE
    ev.converged["fusion/asff"]["converged"] = False
    assert "asff has not converged" in _verdicts(ev)["C8"]


def test_chain_claims_need_learned_rows() -> None:
    ev = _evidence({"asff": [0.1] * 3, "sum": [0.2] * 3, "concat": [0.2] * 3}, {"all": 0.5})
    ev.table1_runs = pd.DataFrame(
        {
            "experiment": ["table1/bof"] * 2 + ["table1/yolov3-original"] * 2,
            "seed": [0, 1, 0, 1],
            "AP": [0.30, 0.32, 0.25, 0.26],
        }
    )
    assert _verdicts(ev)["C1"] == REPLICATED
    ev.min_ap = 0.28  # yolov3-original did not learn
    assert "did not learn" in _verdicts(ev)["C1"]


def test_latex_escapes_what_tables_contain() -> None:
    assert latex_escape("a_b 50% ±1 Δx **bold** `code`") == r"a\_b 50\% $\pm$1 $\Delta$x bold code"
    tex = to_latex(pd.DataFrame({"strategy": ["x"], "AP": ["1.0"]}), "cap", ["note"])
    assert tex.splitlines()[4] == r"\begin{tabular}{lr}" and r"\caption{cap note}" in tex


def test_the_report_reads_the_validation_annotations_once(study, monkeypatch) -> None:
    """Table 3's bootstrap and the class names of the weight maps share one read of the
    annotation file."""
    results, params = study
    _write_analysis(results, {"none": 0.0, "good": 0.1, "same": 0.3}, with_weights="good")
    reads: list[Path] = []

    def counted(path: Path) -> dict:
        reads.append(Path(path))
        return read_annotation_file(path)

    labels: list[list[str]] = []

    def maps_figure(maps, name, out_dir, caption, class_names=()):  # noqa: ANN001
        labels.append(list(class_names))
        return []

    monkeypatch.setattr("study.data.coco.read_annotation_file", counted)
    monkeypatch.setattr("study.report.build.weight_maps_figure", maps_figure)
    paths = build_report(params, results)
    assert [p.name for p in reads] == ["instances_val2017.json"]
    assert labels == [["a", "b"]]  # the categories of the annotation file, in id order
    assert {"gradient_consistency.csv", "weight_agreement.csv"} <= {p.name for p in paths}
    agree = pd.read_csv(results / "tables" / "weight_agreement.csv")
    assert list(agree["strategy"]) == ["good"]
