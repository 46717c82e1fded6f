"""The report (study/report): per-run collection, seed statistics, paired bootstrap, tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.errors import StudyError
from study.report import build_report
from study.report.build import scorers as run_scorers
from study.report.build import validation_annotations
from study.report.collect import collect_runs, read_run
from study.report.stats import paired_differences, seed_summary
from study.report.tables import PAPER_TABLE1, PAPER_TABLE3


def test_read_run_collects_metrics_speed_and_training(study) -> None:
    results, _ = study
    row = read_run(results, "fusion/good", 1)
    assert row["experiment"] == "fusion/good" and row["seed"] == 1
    assert 0 < row["AP"] <= 1 and row["img_size"] == 64
    assert row["train_min"] == 2.0 and row["profile"] == "test" and row["num_images"] == 20
    runs = collect_runs(results, ["fusion/none", "fusion/good"], [0, 1, 2])
    assert len(runs) == 6 and list(runs["seed"]) == [0, 1, 2, 0, 1, 2]


def test_missing_or_broken_run_files_name_the_file(study) -> None:
    results, _ = study
    with pytest.raises(StudyError, match="fusion/none/seed7/metrics.json: file not found"):
        read_run(results, "fusion/none", 7)
    (results / "fusion/none/seed0/train_summary.json").write_text("{oops")
    with pytest.raises(StudyError, match="seed0/train_summary.json: invalid JSON"):
        read_run(results, "fusion/none", 0)
    (results / "fusion/none/seed1/metrics.json").write_text(json.dumps({"AP": 0.1}))
    with pytest.raises(StudyError, match="seed1/metrics.json: missing keys AP50"):
        read_run(results, "fusion/none", 1)


def test_seed_summary_mean_and_sample_std() -> None:
    runs = pd.DataFrame(
        {"experiment": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "AP": [0.1, 0.2, 0.3, 0.5]}
    )
    s = seed_summary(runs, ["AP"])
    assert list(s["experiment"]) == ["a", "b"] and list(s["seeds"]) == [3, 1]
    assert s["AP"][0] == pytest.approx(0.2) and s["AP_std"][0] == pytest.approx(0.1)
    assert math.isnan(s["AP_std"][1])  # one seed: no spread


def test_paired_differences_separate_a_real_gain_from_none(study) -> None:
    results, params = study
    runs = collect_runs(results, [f"fusion/{f}" for f in params["fusions"]], [0, 1, 2])
    scorers = run_scorers(results, runs, validation_annotations(runs))
    exps = list(dict.fromkeys(runs["experiment"]))
    families = {"table3": [(e, "fusion/none") for e in exps if e != "fusion/none"]}
    deltas = paired_differences(scorers, families, [0, 1, 2], replicates=300)
    good = deltas[(deltas["experiment"] == "fusion/good") & (deltas["metric"] == "AP")].iloc[0]
    same = deltas[(deltas["experiment"] == "fusion/same") & (deltas["metric"] == "AP")].iloc[0]
    assert good["delta"] > 0.1 and good["positive"] == 3 and good["boot_lo"] > 0
    assert same["delta"] == 0 and same["boot_lo"] == same["boot_hi"] == 0 and same["within_noise"]
    # the point estimate is the mean over seeds of the full-data differences
    per_seed = [
        scorers[("fusion/good", s)].full()["AP"] - scorers[("fusion/none", s)].full()["AP"]
        for s in (0, 1, 2)
    ]
    assert good["delta"] == pytest.approx(np.mean(per_seed))
    assert good["per_seed"] == pytest.approx(per_seed)
    # the seed interval is a t interval on those three differences at Holm's level
    assert good["lo"] <= good["delta"] <= good["hi"] and good["level"] in (0.025, 0.05)
    assert good["within_noise"] == (good["lo"] <= 0 <= good["hi"])
    again = paired_differences(scorers, families, [0, 1, 2], replicates=300)
    pd.testing.assert_frame_equal(deltas, again)  # seeded


def test_build_report_writes_tables_with_captions_and_paper_numbers(study) -> None:
    results, params = study
    paths = build_report(params, results)
    names = sorted(p.name for p in paths)
    tables = ("fusion", "table1", "scorecard", "test_sizes", "asff_star")
    tables += ("error_breakdown", "error_breakdown_sizes")
    figures = ("speed_accuracy", "error_breakdown")
    assert names == sorted(
        [f"{t}.{ext}" for t in tables for ext in ("md", "tex", "csv")]
        + [f"{f}.{ext}" for f in figures for ext in ("png", "svg")]
        + ["runs.csv", "metrics.json", "provenance.json"]
    )
    errors = pd.read_csv(results / "tables" / "error_breakdown.csv").set_index("strategy")
    assert list(errors.index) == ["none", "good", "same"] and (errors["seeds"] == 3).all()
    # `same` has none's detections: the same breakdown, seed by seed
    for column in ("AP50", "cls", "loc", "miss", "FP", "FN"):
        assert errors.loc["same", column] == pytest.approx(errors.loc["none", column])
    assert errors.loc["good", "AP50"] > errors.loc["none", "AP50"]
    prov = json.loads((results / "tables" / "provenance.json").read_text())
    assert prov["stage"] == "study report" and len(prov["params_sha256"]) == 16
    assert prov["threads"] >= 1 and str(results / "tables" / "fusion.md") in prov["files"]
    tex = (results / "tables" / "fusion.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and "profile test" in tex
    compact = json.loads((results / "metrics.json").read_text())
    assert set(compact) == {"fusion/none", "fusion/good", "fusion/same", "table1/bof"}
    assert set(compact["fusion/good"]) == {"seed0", "seed1", "seed2"}
    assert set(compact["fusion/good"]["seed1"]) == {"AP", "APs", "APm", "APl"}
    card = pd.read_csv(results / "tables" / "scorecard.csv").set_index("claim")
    assert card.loc["C1", "verdict"].startswith("not tested on this profile")
    assert card.loc["C5", "verdict"].startswith("not tested on this profile")  # no analysis
    md = (results / "tables" / "fusion.md").read_text()
    assert "profile `test`" in md and "3 seed(s) per strategy" in md and "Holm" in md
    assert PAPER_TABLE3["asff"] not in md and PAPER_TABLE3["none"] in md
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "reference" in lines["none"] and "within noise" in lines["same"]
    assert "3/3" in lines["good"] and "0/3" in lines["same"]  # the sign count
    assert " ± " in lines["good"]  # mean ± std over seeds
    csv = pd.read_csv(results / "tables" / "fusion.csv")
    assert list(csv["strategy"]) == ["none", "good", "same"]
    assert csv.loc[1, "dAP_boot_lo"] > 0 and bool(csv.loc[2, "dAP_within_noise"])
    assert csv.loc[0, "params"] == 2_500_000 and csv.loc[0, "flops"] == 1.2e9
    assert list(csv["ms"]) == [10.0, 11.0, 12.0]  # bench.csv at the eval size, fp32 eager

    t1 = (results / "tables" / "table1.md").read_text()
    assert "not trained on this profile" in t1 and f"{PAPER_TABLE1['baseline']['AP']:.1f}" in t1
    rows = pd.read_csv(results / "tables" / "table1.csv")
    assert list(rows["row"]) == ["bof", "ga", "baseline"]
    assert bool(rows.loc[0, "learned"]) and not bool(rows.loc[1, "learned"])
    runs = pd.read_csv(results / "tables" / "runs.csv")
    assert len(runs) == 10


def test_a_row_below_min_ap_is_marked_not_shown(study) -> None:
    results, params = study
    params = {**params, "report": {**params["report"], "min_ap": 0.99}}
    build_report(params, results)
    md = (results / "tables" / "table1.md").read_text()
    bof = next(line for line in md.splitlines() if line.startswith("| bof"))
    assert "< 99: did not learn within the budget" in bof and bof.split("|")[2].strip() == "–"
    fusion = (results / "tables" / "fusion.md").read_text()
    assert "AP < 0.99: did not learn within the budget" in fusion


def test_report_without_experiments_is_a_study_error(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="neither `fusions` nor `table1`"):
        build_report({"fusions": [], "table1": []}, tmp_path)


def test_pairwise_table_compares_one_strategy_with_every_other(study) -> None:
    results, params = study
    params = {**params, "report": {**params["report"], "pairwise": "good"}}
    paths = build_report(params, results)
    assert {"fusion_vs_good.md", "fusion_vs_good.tex", "fusion_vs_good.csv"} <= {
        p.name for p in paths
    }
    md = (results / "tables" / "fusion_vs_good.md").read_text()
    assert "**good against every other strategy**" in md and "Holm" in md
    pairs = pd.read_csv(results / "tables" / "fusion_vs_good.csv")
    assert list(pairs["comparison"]) == ["good − none", "good − same"]
    assert (pairs["dAP_boot_lo"] > 0).all() and (pairs["dAP_positive"] == 3).all()
    # good - none is Table 3's (good vs none) difference, same replicates: identical numbers
    # (its seed interval may differ: each table is its own Holm family)
    t3 = pd.read_csv(results / "tables" / "fusion.csv").set_index("strategy")
    for key in ("delta", "boot_lo", "boot_hi", "seed0", "seed1", "seed2"):
        assert pairs.loc[0, f"dAP_{key}"] == pytest.approx(t3.loc["good", f"dAP_{key}"])
    # `same` has none's detections: good - same equals good - none per seed
    for seed in (0, 1, 2):
        assert pairs.loc[1, f"dAP_seed{seed}"] == pytest.approx(pairs.loc[0, f"dAP_seed{seed}"])


def test_pairwise_must_name_a_strategy_of_the_study(study) -> None:
    results, params = study
    params = {**params, "report": {**params["report"], "pairwise": "asff"}}
    with pytest.raises(StudyError, match="report.pairwise: 'asff' is not one of `fusions`"):
        build_report(params, results)


def test_speed_report_joins_test_sizes_and_bench(study) -> None:
    """The test-size table: AP at each size (metrics.json + test_sizes/) beside the bench's
    fp32 latency; the scorecard's C4 reads the interleaved overhead rows."""
    results, params = study
    params = {**params, "fusions": ["none", "good", "same"]}
    build_report(params, results)
    sizes = pd.read_csv(results / "tables" / "test_sizes.csv")
    assert list(zip(sizes["model"], sizes["size"], strict=True))[:2] == [
        ("fusion/none", 64),
        ("fusion/none", 96),
    ]
    none = sizes[sizes["model"] == "fusion/none"].set_index("size")
    assert none.loc[96, "AP"] == pytest.approx(1.1 * none.loc[64, "AP"])
    assert list(none["ms"]) == [10.0, 20.0] and set(sizes["seeds"]) == {1, 3}
    md = (results / "tables" / "test_sizes.md").read_text()
    assert "cpu (test)" in md and "fp32" in md
    star = pd.read_csv(results / "tables" / "asff_star.csv")
    assert list(star["size"][:4]) == [320, 416, 608, 800] and star.loc[2, "AP"] == 42.4
    assert (star["source"] == "paper").sum() == 4  # no ASFF model in this study: paper rows only
    assert (results / "figures" / "speed_accuracy.svg").is_file()


def test_c4_from_the_interleaved_overhead(study) -> None:
    from study.report.scorecard import INCONCLUSIVE, REPLICATED, Evidence, claim_c4

    results, _ = study
    runs = collect_runs(results, ["fusion/none", "fusion/good"], [0])
    runs["experiment"] = runs["experiment"].replace({"fusion/good": "fusion/asff"})
    over = pd.read_csv(results / "bench_overhead.csv").replace({"fusion/good": "fusion/asff"})
    # on a CPU (the fixture's bench) or at another size: the ratio, and no verdict
    row = claim_c4(Evidence(None, None, runs, None, None, None, 0.1, over))
    assert row["verdict"].startswith("not comparable: cpu (test) at 64 px")
    assert "x1.100" in row["measured"]
    # on a GPU at 608 px it is judged
    runs["img_size"], over["size"], over["device"] = 608, 608, "cuda (test GPU)"
    row = claim_c4(Evidence(None, None, runs, None, None, None, 0.1, over))
    assert row["verdict"] == REPLICATED and "x1.100" in row["measured"]
    assert "10 interleaved rounds" in row["spread"] and "x1.040 .. x1.200" in row["spread"]
    over["ratio_round_median"] = 1.3
    assert claim_c4(Evidence(None, None, runs, None, None, None, 0.1, over))["verdict"] == (
        INCONCLUSIVE  # the rounds reach into the band
    )
    over["ratio_round_min"] = 1.2
    assert claim_c4(Evidence(None, None, runs, None, None, None, 0.1, over))["verdict"] == (
        "not replicated"
    )
    assert "not tested" in claim_c4(Evidence(None, None, runs, None, None, None, 0.1))["verdict"]


def test_a_broken_bench_file_is_named(study) -> None:
    results, params = study
    (results / "bench.csv").write_text("model,size\nfusion/none,64\n")
    with pytest.raises(StudyError, match="bench.csv: missing columns"):
        build_report(params, results)


def test_a_larger_size_timed_faster_is_flagged() -> None:
    """Latency across sizes that folds back (a larger size faster) is flagged, not shown as
    a speed-accuracy trade-off."""
    from study.report.speed import inversions

    summary = pd.DataFrame(
        {
            "experiment": ["fusion/none"] * 3 + ["fusion/asff"] * 2,
            "size": [64, 96, 128, 64, 96],
            "ms": [13.5, 11.9, 14.0, 5.0, 6.0],
        }
    )
    assert inversions(summary) == ["INVERTED: slower than at 96 px", "", "", "", ""]
