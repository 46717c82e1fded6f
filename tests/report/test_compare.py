"""``study compare A B``: exact reruns, the rerun spread, and verdicts that hold or flip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from study.cli import main
from study.report.compare import compare_results

# strategy -> per-seed AP: asff clears `none` by far in every seed (beyond noise), sum does not
AP = {"none": [0.50, 0.52, 0.51], "sum": [0.52, 0.50, 0.55], "asff": [0.60, 0.61, 0.60]}


def write_results(root: Path, ap: dict[str, list[float]]) -> Path:
    for strategy, values in ap.items():
        for seed, v in enumerate(values):
            run = root / "fusion" / strategy / f"seed{seed}"
            run.mkdir(parents=True)
            metrics = {k: v for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
            (run / "metrics.json").write_text(json.dumps(metrics | {"meta": {}}))
            (run / "detections.json.gz").write_bytes(f"{strategy}{seed}".encode())
    return root


def test_an_exact_copy_reproduces_every_run_and_verdict(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a", AP)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    c = compare_results(a, b)
    assert c.holds and c.runs["exact"].all() and len(c.runs) == 9
    assert set(c.spread["ΔAP"]) == {0.0}
    ap = c.verdicts[c.verdicts["metric"] == "AP"].set_index("strategy")
    assert ap.loc["asff", "verdict A"] == "beyond noise (+)"
    assert ap.loc["sum", "verdict A"] == "within noise"
    assert main(["compare", str(a), str(b)]) == 0


def test_a_rerun_that_loses_a_verdict_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = write_results(tmp_path / "a", AP)
    rerun = AP | {"asff": [0.60, 0.49, 0.58]}  # seed 1 now below `none`: no longer beyond noise
    b = write_results(tmp_path / "b", rerun)
    c = compare_results(a, b)
    assert not c.holds
    lost = c.verdicts[~c.verdicts["holds"]]
    assert set(lost["strategy"]) == {"asff"} and set(lost["verdict B"]) == {"within noise"}
    changed = [(s, k) for s, k in zip(c.runs["strategy"], c.runs["seed"], strict=True)]
    assert [not e for e in c.runs["exact"]] == [x in {("asff", 1), ("asff", 2)} for x in changed]
    spread = c.spread.set_index("strategy")
    assert spread.loc["asff", "ΔAP"] == pytest.approx((0.0 - 0.12 - 0.02) / 3)
    assert spread.loc["asff", "exact"] == 1 and spread.loc["none", "exact"] == 3
    assert main(["compare", str(a), str(b)]) == 1
    assert "do not hold in B" in capsys.readouterr().out


def test_missing_folder_or_no_common_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = write_results(tmp_path / "a", AP)
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such results folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(a), str(tmp_path / "empty")]) == 2
    assert "no fusion run in common" in capsys.readouterr().err
