"""The DVC pipeline's wiring: dvc.yaml, params.yaml, experiments/ and study/runs.py agree (which
code each stage depends on: tests/test_dependencies.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.choices import LR_SCHEDULES
from study.config import check_dataset_param, load_experiment, read_yaml
from study.engine.schedule import multiscale_sizes
from study.errors import ConfigError
from study.models import available
from study.models.fusions import FUSIONS
from study.runs import CONFIGS, MODELS, RESULTS, RUNS, experiment_name, experiment_path, run_paths

REPO = Path(__file__).resolve().parents[1]
PARAMS_PATH = REPO / "params.yaml"
PARAMS = read_yaml(PARAMS_PATH)
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC["stages"]
PROFILES = list(PARAMS["profiles"])
# (group, matrix key, params list of experiments, params list of seeds)
GROUPS = [
    ("fusion", "fusion", "fusions", "seeds"),
    ("designs", "fusion", "designs", "seeds"),  # the extended comparison (make study-designs)
    ("table1", "row", "table1", "table1_seeds"),
]
EXPERIMENTS = [f"fusion/{f}" for f in PARAMS["fusions"]] + [
    f"table1/{r}" for r in PARAMS["table1"] + PARAMS["table1_not_run"]
]


def dep_paths(stage: list) -> list[str]:
    """dvc.yaml deps/outs/metrics entries are strings or one-key mappings (path: options)."""
    return [d if isinstance(d, str) else next(iter(d)) for d in stage]


def test_params_name_experiments_seeds_and_profiles() -> None:
    for key in ("fusions", "seeds", "table1", "table1_seeds"):
        assert len(PARAMS[key]) == len(set(PARAMS[key])), key
    assert len(PARAMS["seeds"]) >= 3  # the fusion study is over seeds
    assert "none" in PARAMS["fusions"]  # the reference row of Table 3
    assert not set(PARAMS["table1"]) & set(PARAMS["table1_not_run"])
    assert PARAMS["profile"] in PROFILES
    assert {"default", "smoke", "gpu", "paper"} <= set(PROFILES)


@pytest.mark.parametrize("fusion", PARAMS["fusions"])
def test_each_listed_fusion_has_its_experiment_and_module(fusion: str) -> None:
    """dvc.yaml depends on experiments/fusion/<name>.yaml and study/models/fusions/<name>.py."""
    assert (REPO / "experiments" / "fusion" / f"{fusion}.yaml").is_file()
    assert (REPO / "study" / "models" / "fusions" / f"{fusion}.py").is_file()
    cfg = load_experiment(REPO / "experiments" / "fusion" / f"{fusion}.yaml", params_path=None)
    assert cfg["model"]["fusion"] == fusion and fusion in FUSIONS


@pytest.mark.parametrize(("group", "key", "names", "seeds"), GROUPS)
def test_per_run_stages_are_matrices_over_experiments_and_seeds(
    group: str, key: str, names: str, seeds: str
) -> None:
    for stage in ("train", "evaluate"):
        body = STAGES[f"{stage}-{group}"]
        assert body["matrix"] == {key: f"${{{names}}}", "seed": f"${{{seeds}}}"}
        assert body["cmd"].startswith(
            f"study {stage} {group}/${{item.{key}}} --seed ${{item.seed}}"
        )
        assert "params" not in body  # the resolved config files stand for params.yaml
    assert STAGES[f"evaluate-{group}"]["cmd"].endswith(" --test-sizes")
    run = f"{group}/${{item.{key}}}/seed${{item.seed}}"
    assert f"{CONFIGS}/{run}/train.yaml" in STAGES[f"train-{group}"]["deps"]
    assert f"{CONFIGS}/{run}/eval.yaml" in STAGES[f"evaluate-{group}"]["deps"]
    for stage in ("train", "evaluate"):  # one part each: a setting of the other reruns nothing
        other = "eval" if stage == "train" else "train"
        assert f"{CONFIGS}/{run}/{other}.yaml" not in STAGES[f"{stage}-{group}"]["deps"]
    train = STAGES[f"train-{group}"]
    assert dep_paths(train["outs"]) == [
        f"{MODELS}/{run}.pt",
        f"{MODELS}/{group}/${{item.{key}}}/snapshots/seed${{item.seed}}",
        f"{RESULTS}/{run}/train_summary.json",
        f"{RESULTS}/{run}/live",
    ]
    evaluate = STAGES[f"evaluate-{group}"]
    assert f"{MODELS}/{run}.pt" in evaluate["deps"] and "${dataset}" in evaluate["deps"]
    # per-run files are plain outputs: `dvc exp show` reads only the report's compact metrics
    assert dep_paths(evaluate["outs"]) == [
        f"{RESULTS}/{run}/detections.json.gz",
        f"{RESULTS}/{run}/metrics.json",
        f"{RESULTS}/{run}/test_sizes",
        f"{RESULTS}/{run}/curve.json",
    ]
    # the learning curve scores the training snapshots
    assert f"{MODELS}/{group}/${{item.{key}}}/snapshots/seed${{item.seed}}" in evaluate["deps"]
    # the detections behind every metric travel with the repository (git), not the DVC cache:
    # a fresh clone can re-score them (`study verify`)
    assert all(next(iter(o.values()))["cache"] is False for o in evaluate["outs"])
    assert not any("metrics" in STAGES[f"{s}-{group}"] for s in ("train", "evaluate"))


def test_speed_stage_times_every_model_in_one_process() -> None:
    """`study bench`: one stage (the models interleaved), after every train stage of the study
    (not the extended comparison's: speed-designs times those), with the settings and lists it
    reads as params."""
    speed = STAGES["speed"]
    assert speed["cmd"] == "study bench"
    deps = set(speed["deps"])
    assert {"models/fusion", "models/table1", "experiments", "study/eval/bench.py"} <= deps
    assert "${dataset}" in deps and "models" not in deps and "models/designs" not in deps
    assert {"bench", "fusions", "table1", "table1_seeds", "profiles.${profile}"} <= set(
        speed["params"]
    )
    assert dep_paths(speed["outs"]) == ["results/bench.csv", "results/bench_overhead.csv"]
    assert {"results/bench.csv", "results/bench_overhead.csv"} <= set(STAGES["report"]["deps"])
    from study.eval.bench import DEFAULTS

    assert set(PARAMS["bench"]) == set(DEFAULTS)


def test_fusion_runs_depend_on_their_own_strategy_module_only() -> None:
    """A new or edited fusion module retrains only its own runs (and the package's shared
    blocks, resize.py, every run's); the Table 1 rows use several strategies and depend on all
    of them."""
    stages = [f"{s}-{g}" for s in ("train", "evaluate", "analyze") for g in ("fusion", "designs")]
    for stage in stages:
        deps = STAGES[stage]["deps"]
        assert "study/models/fusions/${item.fusion}.py" in deps
        assert "study/models" not in deps and "study/models/fusions" not in deps
        others = [d for d in deps if d.startswith("study/models/fusions/") and "${" not in d]
        shared = ["study/models/fusions/__init__.py", "study/models/fusions/resize.py"]
        assert others == shared, others
    for stage in ("train-table1", "evaluate-table1"):
        assert "study/models/fusions" in STAGES[stage]["deps"]
    assert "experiments" not in STAGES["train-fusion"]["deps"]


def test_configure_resolves_every_run_from_the_experiments_and_the_profile() -> None:
    configure = STAGES["configure"]
    assert configure["cmd"] == "study configure"
    assert "experiments" in configure["deps"]
    assert {"profile", "dataset", "fusions", "seeds", "table1", "table1_seeds"} <= set(
        configure["params"]
    )
    assert "profiles.${profile}" in configure["params"]
    assert dep_paths(configure["outs"]) == [str(CONFIGS)]
    assert next(iter(configure["outs"][0].values()))["cache"] is False  # in git, reviewable


def test_report_depends_on_every_run_and_its_params() -> None:
    report = STAGES["report"]
    assert {"results/fusion", "results/table1", "study/report/tables.py"} <= set(report["deps"])
    assert set(report["params"]) == {
        "profile",
        "dataset",
        "fusions",
        "seeds",
        "table1",
        "table1_not_run",
        "table1_seeds",
        "report",
    }
    assert dep_paths(report["outs"]) == ["results/tables", "results/figures"]
    assert dep_paths(report["metrics"]) == ["results/metrics.json"]
    assert dep_paths(STAGES["data"]["outs"]) == [PARAMS["synthetic"]["out"]]


def test_every_fusion_run_is_analysed_from_its_snapshots() -> None:
    analyze = STAGES["analyze-fusion"]
    assert analyze["matrix"] == {"fusion": "${fusions}", "seed": "${seeds}"}
    assert analyze["cmd"] == "study analyze fusion/${item.fusion} --seed ${item.seed}"
    run = "fusion/${item.fusion}/seed${item.seed}"
    deps = set(analyze["deps"])
    assert {
        f"{MODELS}/{run}.pt",
        f"{MODELS}/fusion/${{item.fusion}}/snapshots/seed${{item.seed}}",
    } <= deps
    assert {"study/analysis", "study/engine/loss.py", "${dataset}"} <= deps
    assert {f"{CONFIGS}/{run}/train.yaml", f"{CONFIGS}/{run}/eval.yaml"} <= deps
    assert analyze["params"] == ["analysis"]
    assert dep_paths(analyze["outs"]) == [f"{RESULTS}/{run}/analysis"]
    notebooks = STAGES["notebooks"]
    assert notebooks["cmd"] == "study notebooks"
    assert {"notebooks", "results/tables", "results/figures"} <= set(notebooks["deps"])
    assert dep_paths(notebooks["outs"]) == ["results/notebooks"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_loads_with_every_profile(
    experiment: str, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    path = experiment_path(experiment)
    assert path == Path("experiments") / f"{experiment}.yaml"
    cfg = load_experiment(path, profile, "params.yaml", name=experiment_name(path))
    assert cfg["name"] == experiment and cfg["profile"] == profile
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
    cfg = load_experiment(REPO / "experiments" / "fusion" / "none.yaml", params_path=PARAMS_PATH)
    assert Path(cfg["data"]["root"]) == Path(PARAMS["dataset"])
    check_dataset_param(cfg, str(PARAMS_PATH), explicit_profile=False)


def test_run_paths_of_an_experiment_and_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    path = experiment_path("fusion/asff")
    cfg = load_experiment(path, "default", "params.yaml", {"train": {"seed": 2}}, "fusion/asff")
    paths = run_paths(cfg)
    assert paths.run_dir == RUNS / "fusion" / "asff" / "seed2"
    assert paths.model == MODELS / "fusion" / "asff" / "seed2.pt"
    assert paths.results == RESULTS / "fusion" / "asff" / "seed2"
    assert paths.snapshots == MODELS / "fusion" / "asff" / "snapshots" / "seed2"
    assert paths.analysis == RESULTS / "fusion" / "asff" / "seed2" / "analysis"
    assert paths.train_config == CONFIGS / "fusion" / "asff" / "seed2" / "train.yaml"
    assert paths.eval_config == CONFIGS / "fusion" / "asff" / "seed2" / "eval.yaml"


def test_experiment_name_is_the_path_below_experiments(tmp_path: Path) -> None:
    assert experiment_name(REPO / "experiments" / "fusion" / "asff.yaml") == "fusion/asff"
    assert experiment_name(Path("experiments/table1/bof.yaml")) == "table1/bof"
    assert experiment_name(tmp_path / "mine.yaml") == "mine"


def _params(tmp_path: Path, dataset: str | None) -> Path:
    params = {"profile": "p", "profiles": {"p": {"data": {"root": "data/synthetic"}}}}
    if dataset is not None:
        params["dataset"] = dataset
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_check_dataset_param(tmp_path: Path) -> None:
    cfg = load_experiment(
        REPO / "experiments" / "table1" / "baseline.yaml",
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
    assert set(EXPERIMENTS) <= set(known) and "fusion/_base" not in known
    exp = tmp_path / "mine.yml"
    exp.write_text("name: x\n")
    assert experiment_path(str(exp)) == exp
    with pytest.raises(ConfigError, match="experiment file not found"):
        experiment_path(str(tmp_path / "gone.yaml"))


def test_make_study_runs_every_stage_but_the_extended_comparison() -> None:
    """`make study` reproduces its STUDY targets with everything upstream: that must be every
    stage of dvc.yaml except the extended comparison's, which `make study-designs` (the
    report-designs stage and its upstream) runs in full."""
    import re

    import networkx as nx
    from dvc.repo import Repo

    makefile = (REPO / "Makefile").read_text()
    targets = re.search(r"^STUDY := (.+)$", makefile, re.M).group(1).split()
    assert "dvc repro report-designs" in makefile
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph
        stages = {s.addressing: s for s in repo.index.stages if s.path.endswith("dvc.yaml")}

        def upstream(name: str) -> set[str]:
            return {name} | {s.addressing for s in nx.descendants(graph, stages[name])}

        study = set().union(*(upstream(t) for t in targets))
        designs = upstream("report-designs")
    left_out = set(stages) - study
    assert left_out, "the extended comparison is part of make study"
    assert all(
        re.fullmatch(r"(train|evaluate|analyze)-designs@.+|(speed|report)-designs", s)
        for s in left_out
    ), sorted(left_out)
    assert left_out <= designs
