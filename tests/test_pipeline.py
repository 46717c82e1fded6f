"""The DVC pipeline's wiring: dvc.yaml, params.yaml, experiments/ and study/pipeline.py agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.config import load_experiment, read_yaml
from study.engine.schedule import LR_SCHEDULES, multiscale_sizes
from study.errors import ConfigError
from study.models import available
from study.pipeline import MODELS, RESULTS, check_dataset_param, experiment_path

REPO = Path(__file__).resolve().parents[1]
PARAMS_PATH = REPO / "params.yaml"
PARAMS = read_yaml(PARAMS_PATH)
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
VARIANTS = PARAMS["variants"]
PROFILES = list(PARAMS["profiles"])


def dep_paths(stage: dict) -> list[str]:
    """dvc.yaml deps/outs/metrics entries are strings or one-key mappings (path: options)."""
    return [d if isinstance(d, str) else next(iter(d)) for d in stage]


def test_params_name_variants_and_profiles() -> None:
    assert VARIANTS and len(VARIANTS) == len(set(VARIANTS))
    assert PARAMS["profile"] in PROFILES
    assert {"default", "smoke", "paper"} <= set(PROFILES)


def test_report_depends_on_every_variant_exactly() -> None:
    deps = dep_paths(DVC["stages"]["report"]["deps"])
    results = [d for d in deps if d.startswith(f"{RESULTS}/")]
    expected = [f"{RESULTS}/{v}/{f}" for f in ("metrics.json", "speed.json") for v in VARIANTS]
    assert sorted(results) == sorted(expected)
    assert len(results) == len(set(results))
    assert set(deps) - set(results) == {"study/report"}
    assert DVC["stages"]["report"]["params"] == ["variants"]


@pytest.mark.parametrize("stage", ["train", "evaluate", "speed"])
def test_per_variant_stages_loop_over_params_variants(stage: str) -> None:
    assert DVC["stages"][stage]["foreach"] == "${variants}"
    do = DVC["stages"][stage]["do"]
    assert do["cmd"] == f"study {stage} ${{item}}"
    assert {"profile", "profiles"} <= set(do["params"])


def test_stage_paths_match_the_pipeline_layout() -> None:
    train = DVC["stages"]["train"]["do"]
    assert f"{MODELS}/${{item}}.pt" in dep_paths(train["outs"])
    assert f"{RESULTS}/${{item}}/train_summary.json" in dep_paths(train["outs"])
    assert dep_paths(train["metrics"]) == [f"{RESULTS}/${{item}}/live/metrics.json"]
    assert "${dataset}" in train["deps"] and "experiments" in train["deps"]
    evaluate = DVC["stages"]["evaluate"]["do"]
    assert f"{MODELS}/${{item}}.pt" in evaluate["deps"] and "${dataset}" in evaluate["deps"]
    assert dep_paths(evaluate["metrics"]) == [f"{RESULTS}/${{item}}/metrics.json"]
    assert dep_paths(evaluate["outs"]) == [f"{RESULTS}/${{item}}/detections.json"]
    speed = DVC["stages"]["speed"]["do"]
    assert dep_paths(speed["metrics"]) == [f"{RESULTS}/${{item}}/speed.json"]
    data = DVC["stages"]["data"]
    assert dep_paths(data["outs"]) == [PARAMS["synthetic"]["out"]]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_variant_loads_with_every_profile(
    variant: str, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    path = experiment_path(variant)
    assert path == Path("experiments") / f"{variant}.yaml"
    cfg = load_experiment(path, profile=profile, params_path="params.yaml")
    assert cfg["name"] == variant and cfg["profile"] == profile
    assert cfg["model"]["name"] in available()
    prof = PARAMS["profiles"][profile]
    assert cfg["data"]["root"] == prof["data"]["root"]
    tc = cfg["train"]
    assert tc["lr_schedule"]["name"] in LR_SCHEDULES
    assert tc["img_size"] % 32 == 0 and cfg["eval"]["img_size"] % 32 == 0
    if tc["multiscale"]["enabled"]:
        sizes = multiscale_sizes(tc["multiscale"])
        assert max(sizes) <= tc["img_size"]
    assert tc["batch_size"] >= 1 and tc["epochs"] >= 1
    assert tc["lr_schedule"]["cosine_end_epoch"] <= tc["epochs"]
    if tc["mixup"]["enabled"]:
        assert tc["mixup"]["off_last_epochs"] < tc["epochs"]  # mixup on for at least one epoch


def test_active_profile_reads_the_declared_dataset() -> None:
    cfg = load_experiment(
        REPO / "experiments" / f"{VARIANTS[0]}.yaml", profile=None, params_path=PARAMS_PATH
    )
    assert Path(cfg["data"]["root"]) == Path(PARAMS["dataset"])
    check_dataset_param(cfg, str(PARAMS_PATH), explicit_profile=False)


def _params(tmp_path: Path, dataset: str | None) -> Path:
    params = {"profile": "p", "profiles": {"p": {"data": {"root": "data/synthetic"}}}}
    if dataset is not None:
        params["dataset"] = dataset
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_check_dataset_param(tmp_path: Path) -> None:
    cfg = load_experiment(
        REPO / "experiments" / "baseline.yaml",
        params_path=None,
        overrides={"data": {"root": "data/synthetic"}},
    )
    cfg["profile"] = "p"
    check_dataset_param(cfg, str(_params(tmp_path, "data/synthetic")), explicit_profile=False)
    check_dataset_param(cfg, str(_params(tmp_path, "data/synthetic/")), explicit_profile=False)
    check_dataset_param(cfg, str(_params(tmp_path, None)), explicit_profile=False)
    check_dataset_param(cfg, str(tmp_path / "missing.yaml"), explicit_profile=False)
    wrong = _params(tmp_path, "../shared/data/coco-subset")
    with pytest.raises(ConfigError) as info:
        check_dataset_param(cfg, str(wrong), explicit_profile=False)
    msg = str(info.value)
    assert str(wrong) in msg and "profile 'p'" in msg
    assert "data.root='data/synthetic'" in msg and "'../shared/data/coco-subset'" in msg
    assert "-S profile=p -S dataset=data/synthetic" in msg
    # an explicit --profile is a deliberate choice outside DVC: not checked
    check_dataset_param(cfg, str(wrong), explicit_profile=True)


def test_experiment_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as info:
        experiment_path("nope")
    msg = str(info.value)
    assert msg.startswith("experiments/nope.yaml: no experiment 'nope'; known: ")
    known = msg.split("known: ")[1].split(", ")
    assert known == sorted(p.stem for p in (REPO / "experiments").glob("[!_]*.yaml"))
    assert set(VARIANTS) <= set(known)
    exp = tmp_path / "mine.yml"
    exp.write_text("name: x\n")
    assert experiment_path(str(exp)) == exp
    with pytest.raises(ConfigError, match="experiment file not found"):
        experiment_path(str(tmp_path / "gone.yaml"))
