"""Experiment configuration (study/config.py): base <- experiment <- profile <- overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.config import deep_merge, load_experiment, parse_override, read_yaml
from study.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
PARAMS = REPO / "params.yaml"
BASE = EXPERIMENTS / "_base.yaml"


def load(name: str, **kw) -> dict:  # noqa: ANN003
    """A Table 1 experiment (experiments/table1/<name>.yaml), named by its file as the CLI does."""
    kw.setdefault("params_path", None)
    return load_experiment(EXPERIMENTS / "table1" / f"{name}.yaml", **kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# The experiment chain
# ---------------------------------------------------------------------------------------------


def test_base_values_reach_the_experiment() -> None:
    cfg = load("baseline")
    base = read_yaml(BASE)
    assert cfg["name"] == "baseline" and cfg["profile"] == "none"
    assert cfg["train"]["momentum"] == base["train"]["momentum"] == 0.9
    assert cfg["eval"] == base["eval"]
    assert set(cfg) == set(base) | {"profile"}


def test_table1_rows_inherit() -> None:
    orig = load("yolov3-original")
    assert orig["model"]["name"] == "yolov3-original"
    assert orig["train"]["mixup"]["enabled"] is False
    assert orig["train"]["lr_schedule"]["name"] == "step"
    assert orig["train"]["iou_loss"] == "none"
    assert orig["train"]["mixup"]["alpha"] == 1.5  # the rest of the mapping is the base's

    bof = load("bof")  # _base_: yolov3-original.yaml
    assert bof["name"] == "bof"
    assert bof["model"]["name"] == "yolov3-original"
    assert bof["train"]["mixup"]["enabled"] is True
    assert bof["train"]["mixup"]["off_last_epochs"] == 30
    assert bof["train"]["lr_schedule"] == {**orig["train"]["lr_schedule"], "name": "official"}
    assert bof["train"]["label_smoothing"] is True and bof["train"]["sync_bn"] is True
    assert bof["train"]["iou_loss"] == "none"  # inherited from yolov3-original

    ga = load("ga")
    assert ga["model"]["name"] == "baseline" and ga["train"]["iou_loss"] == "none"
    assert ga["train"]["mixup"]["enabled"] is True

    baseline = load("baseline")
    assert baseline["model"]["name"] == "baseline" and baseline["train"]["iou_loss"] == "iou"
    assert baseline["description"].startswith("strong baseline")

    asff = load("asff")
    assert asff["model"]["name"] == "asff" and asff["train"]["iou_loss"] == "iou"
    assert asff["train"]["dropblock"]["enabled"] is False

    star = load("asff-star")
    assert star["model"]["name"] == "asff-star" and star["train"]["dropblock"]["enabled"] is True
    assert star["train"]["iou_loss"] == "iou"


def test_profile_and_overrides_merge_in_order() -> None:
    cfg = load("baseline", profile="smoke", params_path=PARAMS)
    smoke = read_yaml(PARAMS)["profiles"]["smoke"]
    base = load("baseline")
    assert cfg["profile"] == "smoke"
    assert cfg["data"] == {**base["data"], **smoke["data"]}
    assert cfg["model"] == {**base["model"], **smoke["model"]}
    for key, value in smoke["train"].items():
        if isinstance(value, dict) and key != "dropblock":
            assert cfg["train"][key] == {**base["train"][key], **value}  # merged, not replaced
        elif key != "dropblock":
            assert cfg["train"][key] == value
    for key in set(base["train"]) - set(smoke["train"]):
        assert cfg["train"][key] == base["train"][key]
    assert cfg["train"]["iou_loss"] == "iou"  # the experiment's
    assert cfg["eval"] == {**base["eval"], **smoke["eval"]}

    cfg = load(
        "baseline",
        profile="smoke",
        params_path=PARAMS,
        overrides={"train": {"epochs": 3, "multiscale": {"every": 5}}},
    )
    assert cfg["train"]["epochs"] == 3
    assert cfg["train"]["multiscale"]["every"] == 5
    assert cfg["train"]["multiscale"]["min_size"] == smoke["train"]["multiscale"]["min_size"]


def test_active_profile_comes_from_params(tmp_path: Path) -> None:
    params = read_yaml(PARAMS)
    cfg = load("asff", profile=None, params_path=PARAMS)
    assert cfg["profile"] == params["profile"]
    assert cfg["model"]["width"] == params["profiles"][params["profile"]]["model"]["width"]
    tmp = write(
        tmp_path / "params.yaml",
        yaml.safe_dump(
            {
                "profile": "b",
                "profiles": {"a": {"train": {"epochs": 1}}, "b": {"train": {"epochs": 2}}},
            }
        ),
    )
    assert load("asff", params_path=tmp)["train"]["epochs"] == 2
    assert load("asff", params_path=tmp)["profile"] == "b"
    assert load("asff", profile="a", params_path=tmp)["train"]["epochs"] == 1


def test_profile_replaces_a_free_form_schedule(tmp_path: Path) -> None:
    # A profile's DropBlock schedule is the whole schedule: the base's epochs 5/80/150 must not
    # survive the merge (in a 6-epoch profile, epoch 5 would fall back to the base's [1, 3, 5]).
    params = write(
        tmp_path / "params.yaml",
        yaml.safe_dump(
            {
                "profile": "short",
                "profiles": {
                    "short": {
                        "train": {
                            "epochs": 6,
                            "dropblock": {"schedule": {1: [1, 3, 3], 3: [3, 3, 3]}},
                        }
                    }
                },
            }
        ),
    )
    cfg = load("asff-star", params_path=params)
    assert cfg["train"]["dropblock"]["schedule"] == {1: [1, 3, 3], 3: [3, 3, 3]}
    assert cfg["train"]["dropblock"]["enabled"] is True  # the rest still merges
    for name, prof in read_yaml(PARAMS)["profiles"].items():
        sched = (prof.get("train") or {}).get("dropblock", {}).get("schedule")
        if sched is not None:
            cfg = load("asff-star", profile=name, params_path=PARAMS)
            assert cfg["train"]["dropblock"]["schedule"] == sched, name


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    exp = write(tmp_path / "my-exp.yaml", f"_base_: {BASE}\nmodel: {{name: asff}}\n")
    cfg = load_experiment(exp, params_path=None)
    assert cfg["name"] == "my-exp" and cfg["model"]["name"] == "asff"
    named = write(tmp_path / "other.yaml", f"_base_: {BASE}\nname: custom\n")
    assert load_experiment(named, params_path=None)["name"] == "custom"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    exp = write(tmp_path / "typo.yaml", f"_base_: {BASE}\nmodle: {{name: asff}}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(exp, params_path=None)
    msg = str(info.value)
    assert str(exp) in msg
    assert "'modle'" in msg
    assert "data, description, eval, model, name, train" in msg


def test_unknown_nested_key(tmp_path: Path) -> None:
    exp = write(
        tmp_path / "nested.yaml",
        f"_base_: {BASE}\ntrain:\n  epochs: 3\n  mixupp: {{enabled: false}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_experiment(exp, params_path=None)
    msg = str(info.value)
    assert str(exp) in msg and "'train.mixupp'" in msg
    valid = msg.split("valid keys at train:")[1]
    for key in ("mixup", "epochs", "multiscale", "dropblock", "lr_schedule"):
        assert key in valid
    deep = write(
        tmp_path / "deep.yaml", f"_base_: {BASE}\ntrain: {{lr_schedule: {{nme: paper}}}}\n"
    )
    with pytest.raises(ConfigError, match=r"'train.lr_schedule.nme'.*cosine_end_epoch"):
        load_experiment(deep, params_path=None)


def test_free_form_subtrees_are_not_checked(tmp_path: Path) -> None:
    exp = write(
        tmp_path / "free.yaml",
        f"_base_: {BASE}\nmodel: {{overrides: {{fusion: asff}}}}\n"
        "train: {dropblock: {schedule: {2: [1, 1, 1]}}}\n",
    )
    cfg = load_experiment(exp, params_path=None)
    assert cfg["model"]["overrides"] == {"fusion": "asff"}
    assert cfg["train"]["dropblock"]["schedule"][2] == [1, 1, 1]


def test_unknown_key_in_a_profile_or_override(tmp_path: Path) -> None:
    params = write(
        tmp_path / "params.yaml",
        yaml.safe_dump({"profile": "p", "profiles": {"p": {"train": {"epoch": 1}}}}),
    )
    with pytest.raises(ConfigError) as info:
        load("baseline", params_path=params)
    assert str(params) in str(info.value) and "profile 'p'" in str(info.value)
    assert "'train.epoch'" in str(info.value)
    with pytest.raises(ConfigError, match=r"overrides: unknown key 'eval.sise'"):
        load("baseline", overrides={"eval": {"sise": 3}})


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError) as info:
        load("baseline", profile="huge", params_path=PARAMS)
    msg = str(info.value)
    assert str(PARAMS) in msg and "'huge'" in msg
    assert ", ".join(read_yaml(PARAMS)["profiles"]) in msg


def test_profile_without_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load("baseline", profile="smoke", params_path=tmp_path / "missing.yaml")
    # no params file and no profile: the experiment as written
    assert load("baseline", params_path=tmp_path / "missing.yaml")["profile"] == "none"


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", f"_base_: {BASE}\ntrain: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(bad, params_path=None)
    assert str(bad) in str(info.value) and "invalid YAML" in str(info.value)
    bad_params = write(tmp_path / "params.yaml", "profiles: {a: [}\n")
    with pytest.raises(ConfigError, match="params.yaml: invalid YAML"):
        load("baseline", params_path=bad_params)


def test_non_mapping_missing_and_circular_files(tmp_path: Path) -> None:
    lst = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_experiment(lst, params_path=None)
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml", params_path=None)
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_experiment(tmp_path / "a.yaml", params_path=None)
    missing_base = write(tmp_path / "orphan.yaml", "_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml: file not found"):
        load_experiment(missing_base, params_path=None)


# ---------------------------------------------------------------------------------------------
# Overrides and merging
# ---------------------------------------------------------------------------------------------


def test_parse_override() -> None:
    assert parse_override("train.epochs=3") == {"train": {"epochs": 3}}
    assert parse_override("train.mixup.enabled=false") == {"train": {"mixup": {"enabled": False}}}
    assert parse_override("model.name=asff") == {"model": {"name": "asff"}}
    assert parse_override("train.lr=1.0e-3") == {"train": {"lr": 1e-3}}
    assert parse_override("model.overrides={fusion: asff}") == {
        "model": {"overrides": {"fusion": "asff"}}
    }
    assert parse_override("train.lr_schedule.steps=[1, 2]") == {
        "train": {"lr_schedule": {"steps": [1, 2]}}
    }
    assert parse_override("description=a=b") == {"description": "a=b"}
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_override("train.epochs")


def test_parse_override_reads_exponent_floats() -> None:
    # `--set train.lr=1e-3` must give a number: PyYAML (YAML 1.1) reads "1e-3" as a string,
    # which then fails deep inside torch.optim.SGD.
    assert parse_override("train.lr=1e-3") == {"train": {"lr": 1e-3}}
    assert parse_override("train.lr_schedule.min_lr=5e-6") == {
        "train": {"lr_schedule": {"min_lr": 5e-6}}
    }


def test_deep_merge_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    over = {"a": {"b": 5}, "e": {"f": 1}}
    out = deep_merge(base, over)
    assert out == {"a": {"b": 5, "c": [1]}, "d": 2, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}
    out["a"]["c"].append(2)
    assert base["a"]["c"] == [1]
    assert deep_merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}
