"""Comparison tables from fake results/<variant>/*.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from study.errors import StudyError
from study.report.tables import (
    DELTA,
    PAPER_AP,
    PAPER_REFERENCE,
    build_report,
    collect_metrics,
    pick_reference,
    write_tables,
)


def write_variant(
    results: Path, name: str, ap: float, aps: float | None = 0.2, speed: dict | None = None, **extra
) -> None:
    d = results / name
    d.mkdir(parents=True, exist_ok=True)
    metrics = {
        "AP": ap,
        "AP50": ap + 0.2,
        "AP75": ap + 0.05,
        "APs": aps,
        "APm": 0.4,
        "APl": 0.5,
        "meta": {"profile": "test"},
        **extra,
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    if speed is not None:
        (d / "speed.json").write_text(json.dumps(speed))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_variant(
        tmp_path,
        "asff",
        0.4012,
        aps=None,
        speed={"ms_mean": 22.25, "fps": 44.9, "params": 79_409_493},
    )
    write_variant(tmp_path, "baseline", 0.3881, speed={"ms_mean": 20.0, "fps": 50.0})
    (tmp_path / "baseline" / "train_summary.json").write_text(json.dumps({"wall_seconds": 7200}))
    return tmp_path


def test_collect_metrics_percent_and_delta_vs_baseline(results):
    df = collect_metrics(results, ["asff", "baseline"])
    assert df.attrs["reference"] == "baseline"
    assert df["variant"].tolist() == ["asff", "baseline"]
    assert df["AP"].tolist() == pytest.approx([40.12, 38.81])
    assert df[DELTA].tolist() == pytest.approx([1.31, 0.0])
    assert df["AP50"].tolist() == pytest.approx([60.12, 58.81])
    assert pd.isna(df["APs"].iloc[0]) and df["APs"].iloc[1] == pytest.approx(20.0)
    assert df["ms"].tolist() == pytest.approx([22.25, 20.0])
    assert df["params M"].iloc[0] == pytest.approx(79.409493)
    assert pd.isna(df["train min"].iloc[0]) and df["train min"].iloc[1] == pytest.approx(120.0)


def test_write_tables_markdown_and_csv(results, tmp_path):
    df = collect_metrics(results, ["asff", "baseline"])
    md_path, csv_path = write_tables(df, tmp_path / "tables")
    md = md_path.read_text()
    assert md_path.name == "comparison.md" and csv_path.name == "comparison.csv"
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 40.1 |" in lines["asff"] and "+1.3" in lines["asff"] and "–" in lines["asff"]
    assert "| 38.8 |" in lines["baseline"] and "+0.0" in lines["baseline"]
    assert "AP minus the AP of `baseline`" in md
    csv = pd.read_csv(csv_path)
    assert csv["variant"].tolist() == ["asff", "baseline"]
    assert csv["AP"].tolist() == [40.1, 38.8]
    assert csv[DELTA].tolist() == [1.3, 0.0]
    assert pd.isna(csv["APs"].iloc[0])


def test_paper_column_beside_measured(results, tmp_path):
    df = collect_metrics(results, ["asff", "baseline"])
    md_path, csv_path = write_tables(df, tmp_path, name="vs_paper", paper=PAPER_REFERENCE)
    csv = pd.read_csv(csv_path).set_index("variant")
    assert csv.loc["asff", PAPER_AP] == 40.6 and csv.loc["baseline", PAPER_AP] == 38.8
    assert csv.loc["asff", "AP"] == 40.1
    assert PAPER_AP in md_path.read_text()


def test_paper_reference_values_and_sources():
    assert {k: v["AP"] for k, v in PAPER_REFERENCE.items()} == {
        "yolov3-original": 33.0,
        "bof": 37.0,
        "baseline": 38.8,
        "asff": 40.6,
        "asff-star": 42.4,
    }
    assert [v["ms"] for v in PAPER_REFERENCE.values()] == [20.0, 20.0, 20.0, 22.0, 22.0]
    assert PAPER_REFERENCE["asff-star"]["split"] == "test-dev"
    assert "reprint" in PAPER_REFERENCE["asff-star"]["source"]
    assert PAPER_REFERENCE["bof"]["source"].startswith("README")


def test_reference_choice():
    assert pick_reference(["asff", "baseline"]) == "baseline"
    assert pick_reference(["a", "b"]) == "a"
    assert pick_reference(["a", "b"], "b") == "b"
    with pytest.raises(StudyError, match="'c'"):
        pick_reference(["a", "b"], "c")


def test_explicit_reference_changes_delta(results):
    df = collect_metrics(results, ["asff", "baseline"], reference="asff")
    assert df[DELTA].tolist() == pytest.approx([0.0, -1.31])


def test_missing_metrics_file_names_the_path(results):
    with pytest.raises(StudyError, match=r"nope[/\\]metrics\.json: file not found"):
        collect_metrics(results, ["baseline", "nope"])


def test_invalid_json_and_missing_keys_name_the_file(results):
    (results / "asff" / "metrics.json").write_text("{not json")
    with pytest.raises(StudyError, match=r"asff[/\\]metrics\.json: invalid JSON"):
        collect_metrics(results, ["asff"])
    (results / "asff" / "metrics.json").write_text(json.dumps({"AP": 0.1, "AP50": 0.2}))
    with pytest.raises(StudyError, match="missing keys AP75, APs, APm, APl"):
        collect_metrics(results, ["asff"])
    (results / "asff" / "metrics.json").write_text(
        json.dumps({"AP": "high", "AP50": 0, "AP75": 0, "APs": 0, "APm": 0, "APl": 0})
    )
    with pytest.raises(StudyError, match="'AP' must be a number"):
        collect_metrics(results, ["asff"])


def test_build_report_discovers_variants(results):
    paths = build_report(results)
    assert [p.name for p in paths] == ["comparison.md", "comparison.csv"]
    assert all(p.parent == results / "tables" for p in paths)
    csv = pd.read_csv(paths[1])
    assert csv["variant"].tolist() == ["asff", "baseline"]
    assert csv[DELTA].tolist() == [1.3, 0.0]


def test_build_report_with_no_results_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="no results"):
        build_report(tmp_path)
