"""Experiment configuration (study/config.py): base <- experiment <- profile <- overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.config import RULES, deep_merge, load_experiment, parse_override, read_yaml
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


# ---------------------------------------------------------------------------------------------
# Value types and ranges
# ---------------------------------------------------------------------------------------------


def every_key(cfg: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value for every leaf of ``cfg`` (mappings are walked, not listed)."""
    out: dict[str, object] = {}
    for key, value in cfg.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(every_key(value, f"{where}."))
        else:
            out[where] = value
    return out


def test_every_experiment_loads_with_every_profile() -> None:
    profiles = list(read_yaml(PARAMS)["profiles"])
    files = sorted(EXPERIMENTS.rglob("*.yaml"))
    assert len(files) >= 13 and len(profiles) >= 4
    for path in files:
        name = str(path.relative_to(EXPERIMENTS).with_suffix(""))
        assert load_experiment(path, params_path=None, name=name)["profile"] == "none"
        for profile in profiles:
            cfg = load_experiment(path, profile, PARAMS, name=name)
            assert cfg["profile"] == profile, (name, profile)


def test_the_rules_name_base_keys_and_every_null_in_the_base_has_a_type() -> None:
    keys = every_key(read_yaml(BASE))
    assert set(RULES) <= set(keys), set(RULES) - set(keys)
    untyped = [k for k, v in keys.items() if v is None and not RULES.get(k, None)]
    assert not untyped, f"null in the base without a declared type in RULES: {untyped}"
    for key in ("name", "data.max_images", "model.fusion", "model.backbone_weights"):
        assert "null" in RULES[key].types
    assert RULES["eval.max_dets"].types == ("int", "null")
    assert RULES["train.objectness_prior"].types == ("float", "null")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.epochs=two", "overrides: train.epochs must be an integer, got 'two' (str)"),
        ("train.lr=fast", "overrides: train.lr must be a number, got 'fast' (str)"),
        ("eval.img_size=big", "overrides: eval.img_size must be an integer, got 'big' (str)"),
        ("train.batch_size=0", "overrides: train.batch_size must be >= 1, got 0"),
        ("train.epochs=true", "overrides: train.epochs must be an integer, got true (bool)"),
        ("train.epochs=2.5", "overrides: train.epochs must be an integer, got 2.5 (float)"),
        ("train.lr=0", "overrides: train.lr must be > 0, got 0"),
        ("data.workers=-1", "overrides: data.workers must be >= 0, got -1"),
        ("train.grad_clip=-1.0", "overrides: train.grad_clip must be >= 0, got -1.0"),
        ("data.max_images=0", "overrides: data.max_images must be >= 1, got 0"),
        ("eval.max_dets=0", "overrides: eval.max_dets must be >= 1, got 0"),
        ("eval.img_size=100", "overrides: eval.img_size must be a multiple of 32, got 100"),
        ("train.multiscale.min_size=300", "train.multiscale.min_size must be a multiple of 32"),
        ("eval.conf_thresh=1.5", "overrides: eval.conf_thresh must be in [0, 1], got 1.5"),
        ("eval.nms_thresh=-0.1", "eval.nms_thresh must be in [0, 1], got -0.1"),
        ("train.objectness_prior=1", "train.objectness_prior must be in [0, 1), got 1"),
        ("train.optimizer=adam", "train.optimizer must be one of sgd, adamw, got 'adam'"),
        ("train.iou_loss=diou", "train.iou_loss must be one of none, iou, giou, got 'diou'"),
        ("train.amp=fp32", "train.amp must be one of auto, off, bf16, fp16, got 'fp32'"),
        ("eval.protocol=pad", "eval.protocol must be one of square, letterbox, got 'pad'"),
        ("eval.backend=coco", "eval.backend must be one of pycocotools, faster-coco-eval"),
        ("train.lr_schedule.name=cos", "train.lr_schedule.name must be one of official, paper"),
        ("train.device=gpu", "train.device must be one of auto, cpu, cuda, cuda:N, got 'gpu'"),
        ("train.channels_last=1", "train.channels_last must be a string or a boolean, got 1"),
        ("train.channels_last=maybe", "must be one of auto or a boolean, got 'maybe'"),
        ("model.anchors=3", "model.anchors must be a string or a list, got 3 (int)"),
        ("model.anchors=[[1, 2]]", "model.anchors must be a list of 9 items, got [[1, 2]]"),
        ("model.fusion=3", "overrides: model.fusion must be a string or null, got 3 (int)"),
        ("train.mixup=[1, 2]", "overrides: train.mixup must be a mapping, got [1, 2] (list)"),
        ("model.overrides=3", "overrides: model.overrides must be a mapping, got 3 (int)"),
        ("train.epochs=null", "overrides: train.epochs must be an integer, got null"),
        ("train.mixup=null", "overrides: train.mixup must be a mapping, got null"),
        ("train.sync_bn=null", "overrides: train.sync_bn must be a boolean, got null"),
        ("train.snapshots=0.5", "overrides: train.snapshots must be a list, got 0.5 (float)"),
        ("description=null", "overrides: description must be a string, got null"),
        ("model.width=.nan", "overrides: model.width must be a finite number, got nan"),
        ("model.depth=.inf", "overrides: model.depth must be a finite number, got inf"),
        ("model.width=0", "overrides: model.width must be in (0, 4], got 0"),
        ("model.depth=-2", "overrides: model.depth must be in (0, 4], got -2"),
        ("train.ignore_thresh=.nan", "train.ignore_thresh must be a finite number, got nan"),
        ("train.momentum=.nan", "overrides: train.momentum must be a finite number, got nan"),
        ("train.momentum=1", "overrides: train.momentum must be in [0, 1), got 1"),
        ("train.mixup.alpha=.nan", "train.mixup.alpha must be a finite number, got nan"),
        ("train.weight_decay=.inf", "train.weight_decay must be a finite number, got inf"),
        ("train.lr=.nan", "overrides: train.lr must be a finite number, got nan"),
        ("train.backbone_lr=-1", "overrides: train.backbone_lr must be >= 0, got -1"),
        ("eval.curve_images=0", "overrides: eval.curve_images must be >= 1, got 0"),
        ("eval.test_sizes=[100]", "overrides: eval.test_sizes[0] must be a multiple of 32"),
    ],
)
def test_a_bad_value_names_the_key_what_it_must_be_and_the_value(
    setting: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load("baseline", overrides=parse_override(setting))
    assert message in str(info.value)
    assert str(info.value).startswith("overrides: ")
    assert "\n" not in str(info.value)


def test_the_source_of_a_bad_value_is_named(tmp_path: Path) -> None:
    exp = write(tmp_path / "asff.yaml", f"_base_: {BASE}\ntrain: {{batch_size: 0}}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(exp, params_path=None)
    assert str(info.value) == f"{exp.resolve()}: train.batch_size must be >= 1, got 0"

    nested = write(tmp_path / "nested.yaml", f"_base_: {exp}\n")  # the error is in its base
    with pytest.raises(ConfigError, match=r"asff.yaml: train.batch_size must be >= 1, got 0"):
        load_experiment(nested, params_path=None)

    params = write(
        tmp_path / "params.yaml",
        yaml.safe_dump(
            {"profile": "default", "profiles": {"default": {"eval": {"img_size": 100}}}}
        ),
    )
    with pytest.raises(ConfigError) as info:
        load("baseline", params_path=params)
    assert str(info.value) == (
        f"{params} (profile 'default'): eval.img_size must be a multiple of 32, got 100"
    )

    base = read_yaml(BASE)
    base["train"]["epochs"] = 0
    bad_base = write(tmp_path / "_base.yaml", yaml.safe_dump(base))
    child = write(tmp_path / "child.yaml", "_base_: _base.yaml\n")
    with pytest.raises(ConfigError, match=r"_base.yaml: train.epochs must be >= 1, got 0"):
        load_experiment(child, params_path=None)
    assert bad_base.is_file()


def test_a_profile_name_typo_in_params_names_the_file_and_the_profiles(tmp_path: Path) -> None:
    params = read_yaml(PARAMS)
    params["profile"] = "defualt"
    typo = write(tmp_path / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load("baseline", params_path=typo)
    msg = str(info.value)
    assert msg.startswith(f"{typo}: unknown profile 'defualt' (its `profile:` key)")
    assert msg.endswith(f"defined profiles: {', '.join(params['profiles'])}")
    assert load("baseline", profile="smoke", params_path=typo)["profile"] == "smoke"

    not_a_mapping = write(tmp_path / "list.yaml", "profile: p\nprofiles: {p: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"profile 'p' must be a mapping, got \[1, 2\]"):
        load("baseline", params_path=not_a_mapping)


def test_null_is_allowed_where_the_base_is_null() -> None:
    cfg = load(
        "baseline",
        overrides={
            "data": {"max_images": None},
            "model": {"fusion": None, "backbone_weights": None},
            "train": {"objectness_prior": None},
            "eval": {"max_dets": None},
        },
    )
    assert cfg["eval"]["max_dets"] is None and cfg["data"]["max_images"] is None
    cfg = load(
        "baseline",
        overrides={
            "data": {"max_images": 8},
            "model": {"fusion": "sum"},
            "eval": {"max_dets": 100},
        },
    )
    assert (cfg["data"]["max_images"], cfg["model"]["fusion"], cfg["eval"]["max_dets"]) == (
        8,
        "sum",
        100,
    )


def test_numbers_ints_for_floats_and_exponent_strings(tmp_path: Path) -> None:
    cfg = load("baseline", overrides={"train": {"lr": 1, "momentum": 0, "grad_clip": 10}})
    assert cfg["train"]["lr"] == 1 and cfg["train"]["momentum"] == 0
    # A fractional warm-up where the base writes an integer (the default profile's 0.15)
    cfg = load("baseline", overrides={"train": {"lr_schedule": {"warmup_epochs": 0.15}}})
    assert cfg["train"]["lr_schedule"]["warmup_epochs"] == 0.15

    # "1e-3" in a YAML file is a string to PyYAML (YAML 1.1): read as the number meant
    exp = write(
        tmp_path / "exp.yaml",
        f"_base_: {BASE}\ntrain: {{lr: 1e-3, weight_decay: 5E-4, lr_schedule: {{min_lr: 1e-6}}}}\n",
    )
    assert yaml.safe_load(exp.read_text())["train"]["lr"] == "1e-3"
    tc = load_experiment(exp, params_path=None)["train"]
    assert (tc["lr"], tc["weight_decay"], tc["lr_schedule"]["min_lr"]) == (1e-3, 5e-4, 1e-6)
    assert isinstance(tc["lr"], float)
    params = write(tmp_path / "params.yaml", "profile: p\nprofiles: {p: {train: {lr: 2e-3}}}\n")
    assert load("baseline", params_path=params)["train"]["lr"] == 2e-3
    assert load("baseline", overrides={"train": {"lr": "3e-4"}})["train"]["lr"] == 3e-4
    # ... but only where a number is expected
    with pytest.raises(ConfigError, match=r"train.epochs must be an integer, got '1e2' \(str\)"):
        load("baseline", overrides={"train": {"epochs": "1e2"}})
    described = load("baseline", overrides={"description": "1e-3"})
    assert described["description"] == "1e-3"


def test_string_choices_and_their_yaml_spellings() -> None:
    # YAML 1.1 reads `off` as false: train.amp=off means the choice "off"
    assert load("baseline", overrides=parse_override("train.amp=off"))["train"]["amp"] == "off"
    with pytest.raises(ConfigError, match=r"train.amp must be a string, got true \(bool\)"):
        load("baseline", overrides=parse_override("train.amp=on"))
    for value, expect in (("auto", "auto"), ("true", True), ("false", False)):
        cfg = load("baseline", overrides=parse_override(f"train.channels_last={value}"))
        assert cfg["train"]["channels_last"] == expect
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load("baseline", overrides={"eval": {"device": device}})["eval"]["device"] == device


def test_anchors_are_a_name_or_nine_pairs() -> None:
    pairs = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90]]
    pairs += [[156, 198], [373, 326.5]]
    assert load("baseline", overrides={"model": {"anchors": pairs}})["model"]["anchors"] == pairs
    assert load("baseline", overrides={"model": {"anchors": "official"}})["model"]["anchors"] == (
        "official"
    )
    with pytest.raises(ConfigError, match=r"model.anchors\[8\] must be a list of 2 items"):
        load("baseline", overrides={"model": {"anchors": [*pairs[:8], [1, 2, 3]]}})
    with pytest.raises(ConfigError, match=r"model.anchors\[0\]\[1\] must be > 0, got 0"):
        load("baseline", overrides={"model": {"anchors": [[1, 0], *pairs[1:]]}})


def test_free_form_mappings_are_type_checked_but_not_their_contents() -> None:
    cfg = load("baseline", overrides={"model": {"fusion_args": {"anything": [1, "x"]}}})
    assert cfg["model"]["fusion_args"] == {"anything": [1, "x"]}
    with pytest.raises(ConfigError, match=r"train.dropblock.schedule must be a mapping"):
        load("asff-star", overrides={"train": {"dropblock": {"schedule": [1, 3, 5]}}})


def test_config_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, study.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_profile_sets_single_experiments_after_its_own_settings(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "profile": "p",
                "profiles": {
                    "p": {
                        "train": {"epochs": 4},
                        "experiments": {"fusion/none": {"train": {"epochs": 8}}},
                    }
                },
            }
        )
    )
    own = load_experiment(REPO / "experiments/fusion/none.yaml", None, params, name="fusion/none")
    other = load_experiment(REPO / "experiments/fusion/sum.yaml", None, params, name="fusion/sum")
    assert own["train"]["epochs"] == 8 and other["train"]["epochs"] == 4
    params.write_text(
        yaml.safe_dump(
            {"profiles": {"default": {"experiments": {"fusion/none": {"train": {"epoks": 8}}}}}}
        )
    )
    with pytest.raises(ConfigError, match=r"experiments\.fusion/none\): unknown key 'train.epoks'"):
        load_experiment(REPO / "experiments/fusion/none.yaml", None, params, name="fusion/none")


def test_pretrain_settings_are_checked_and_may_not_load_their_own_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from study.config import pretrain_settings, resolve_pretrain

    good = {"experiment": "pretrain/backbone", "seed": 100, "out": "models/b.pt"}
    assert pretrain_settings({"pretrain": good}) == good
    for bad in ({**good, "seed": "x"}, {"experiment": "a"}, {**good, "out": ""}, None):
        with pytest.raises(ConfigError, match="params.yaml: .*pretrain"):
            pretrain_settings({"pretrain": bad})
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "pretrain": good,
                "dataset": "data/synthetic",
                "profiles": {"default": {"model": {"backbone_weights": "models/b.pt"}}},
            }
        )
    )
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match="would load its own output models/b.pt"):
        resolve_pretrain(str(params))
