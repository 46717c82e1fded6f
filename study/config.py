"""Experiment configuration: one commented base file, small experiment files, named profiles.

The effective config of a run is ``_base.yaml`` <- ``experiments/<name>.yaml`` <- the profile
in ``params.yaml`` (deep merge, later wins). Every key must exist in the base file: a misspelled
key is an error that lists the valid keys at that level. Every value must have the base value's
type (or the one :data:`RULES` declares) and pass the key's rule in :data:`RULES` (range, multiple
of 32, choices), so that a wrong value stops the run at load time with the file and the key.
"""

from __future__ import annotations

import copy
import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from study.choices import DROPPED_GT, LR_SCHEDULES
from study.errors import ConfigError
from study.runs import experiment_name, experiment_path

BASE_KEY = "_base_"
DEFAULT_PARAMS = "params.yaml"


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unparsable or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


REPLACED = {("train", "dropblock", "schedule"), ("model", "fusion_args")}


def deep_merge(
    base: dict[str, Any], override: dict[str, Any], _prefix: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``base`` with ``override`` merged in (mappings recursively, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and (*_prefix, key) not in REPLACED
        ):
            out[key] = deep_merge(out[key], value, (*_prefix, key))
        else:
            out[key] = copy.deepcopy(value)
    return out


# Sub-trees whose keys are free-form (passed through to a builder), not checked against the base.
FREE_FORM = {
    ("model", "overrides"),
    ("model", "fusion_args"),  # checked against the fusion builder's arguments
    ("train", "dropblock", "schedule"),
}


@dataclass(frozen=True)
class Rule:
    """What one config value may be, besides having the base value's type.

    ``types`` replaces the type taken from the base value: needed where the base value is null,
    or where the key takes more than its base value's type. Kinds: int, float (an int is fine),
    bool, str, list, dict, null. The bounds and ``multiple_of`` apply to numbers, ``choices`` and
    ``pattern`` to strings (``pattern``, a regex, replaces exact matching of ``choices``, which
    then only word the message), ``length`` and ``items`` to lists.
    """

    types: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    length: int | None = None
    items: Rule | None = None


_POSITIVE = Rule(ge=1)
_NON_NEGATIVE = Rule(ge=0)
_SIZE = Rule(types=("int",), ge=1, multiple_of=32)  # input sizes: the coarsest level: stride 32
_FRACTION = Rule(ge=0, le=1)
_DEVICE = Rule(choices=("auto", "cpu", "cuda", "cuda:N"), pattern=r"auto|cpu|cuda(:\d+)?")

# Per-key rules (dotted keys of the base config). Keys whose base value is null must declare their
# type here (null stays allowed where the base is null); a key not listed only needs its base
# value's type. Model and fusion names are checked by the model registry (`study models`), the
# anchor sets' names by study/anchors.py.
RULES: dict[str, Rule] = {
    "name": Rule(types=("str", "null")),
    "model.anchors": Rule(  # a named set or nine [w, h] pairs in input pixels
        types=("str", "list"),
        length=9,
        items=Rule(types=("list",), length=2, items=Rule(types=("float",), gt=0)),
    ),
    "model.fusion": Rule(types=("str", "null")),
    "model.width": Rule(gt=0, le=4),  # channel multiplier
    "model.depth": Rule(gt=0, le=4),  # block-count multiplier
    "model.backbone_weights": Rule(types=("str", "null")),
    "data.max_images": Rule(types=("int", "null"), ge=1),
    "data.workers": _NON_NEGATIVE,
    "train.epochs": _POSITIVE,
    "train.batch_size": _POSITIVE,
    "train.img_size": _SIZE,
    "train.optimizer": Rule(choices=("sgd", "adamw")),
    "train.lr": Rule(gt=0),
    "train.backbone_lr": Rule(ge=0),  # x train.lr for the backbone; 0 = frozen (BN stats too)
    "train.momentum": Rule(ge=0, lt=1),
    "train.weight_decay": _NON_NEGATIVE,
    "train.ignore_thresh": _FRACTION,
    "train.mixup.alpha": Rule(gt=0),
    "train.lr_schedule.name": Rule(choices=LR_SCHEDULES),
    "train.lr_schedule.warmup_epochs": Rule(types=("float",), ge=0),  # fractional epochs
    "train.lr_schedule.warmup_power": Rule(types=("float",)),
    "train.multiscale.min_size": _SIZE,
    "train.multiscale.max_size": _SIZE,
    "train.multiscale.step": _SIZE,
    "train.multiscale.every": _POSITIVE,
    "train.iou_loss": Rule(choices=("none", "iou", "giou")),
    "train.augment.min_box_side": Rule(types=("float",)),
    "train.amp": Rule(choices=("auto", "off", "bf16", "fp16")),
    "train.channels_last": Rule(types=("str", "bool"), choices=("auto",)),
    "train.checkpoint_every": _POSITIVE,
    "train.log_every": _POSITIVE,
    "train.grad_clip": _NON_NEGATIVE,
    "train.ema.ramp": Rule(types=("float",)),
    "train.objectness_prior": Rule(types=("float", "null"), ge=0, lt=1),  # 0 = off
    "train.device": _DEVICE,
    "eval.img_size": _SIZE,
    "eval.protocol": Rule(choices=("square", "letterbox")),
    "eval.conf_thresh": _FRACTION,
    "eval.nms_thresh": _FRACTION,
    "eval.max_dets": Rule(types=("int", "null"), ge=1),  # null = no cap
    "eval.curve_images": Rule(types=("int", "null"), ge=1),  # null = no learning curve
    "eval.batch_size": _POSITIVE,
    "eval.device": _DEVICE,
    "eval.backend": Rule(choices=("pycocotools", "faster-coco-eval")),
    "eval.dropped_gt": Rule(choices=DROPPED_GT),
    "eval.test_sizes": Rule(types=("list",), items=_SIZE),
}

_KIND_TEXT = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "str": "a string",
    "list": "a list",
    "dict": "a mapping",
    "null": "null",
}

_KIND_TYPES: dict[str, type] = {
    "bool": bool,  # before int: a bool is not an integer here
    "int": int,
    "float": float,
    "str": str,
    "list": list,
    "dict": dict,
}

_BOUNDS = (
    ("ge", ">=", operator.ge),
    ("gt", ">", operator.gt),
    ("le", "<=", operator.le),
    ("lt", "<", operator.lt),
)

# "1e-3": PyYAML (YAML 1.1) reads an exponent without a dot as a string.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for kind, cls in _KIND_TYPES.items():
        if isinstance(value, cls):
            return kind
    return type(value).__name__


def _show(value: Any) -> str:
    """A value as the user wrote it, with its type: ``'two' (str)``, ``null``, ``true (bool)``."""
    if value is None:
        return "null"
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return f"{text} ({type(value).__name__})"


def _num(x: float) -> str:
    return f"{x:g}"


def _bounds_text(rule: Rule) -> str | None:
    """``in [0, 1]`` where a number has both a lower and an upper bound, else None."""
    low = f"[{_num(rule.ge)}" if rule.ge is not None else None
    low = low or (f"({_num(rule.gt)}" if rule.gt is not None else None)
    high = f"{_num(rule.le)}]" if rule.le is not None else None
    high = high or (f"{_num(rule.lt)})" if rule.lt is not None else None)
    return f"in {low}, {high}" if low and high else None


def _normalise(value: Any, kinds: tuple[str, ...], rule: Rule) -> Any:
    """YAML 1.1 spellings of the intended value: ``1e-3`` (a string) for a number, ``off`` (false)
    for a string choice."""
    if "float" in kinds and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    if "str" in kinds and "bool" not in kinds and isinstance(value, bool):
        spelled = "on" if value else "off"
        if spelled in rule.choices:
            return spelled
    return value


def _check_value(value: Any, rule: Rule, kinds: tuple[str, ...], where: str, source: str) -> Any:
    """``value`` checked against its kinds (none: any) and ``rule``; returned normalised."""
    value = _normalise(value, kinds, rule)
    kind = _kind(value)
    if kinds and kind not in kinds and not (kind == "int" and "float" in kinds):
        expected = " or ".join(_KIND_TEXT[k] for k in kinds)
        raise ConfigError(f"{source}: {where} must be {expected}, got {_show(value)}")

    def fail(requirement: str) -> ConfigError:
        return ConfigError(f"{source}: {where} must be {requirement}, got {value!r}")

    if kind in ("int", "float"):
        if not math.isfinite(value):  # NaN passes every comparison; inf is no setting
            raise fail("a finite number")
        for field, op, holds in _BOUNDS:
            limit = getattr(rule, field)
            if limit is not None and not holds(value, limit):
                raise fail(_bounds_text(rule) or f"{op} {_num(limit)}")
        if rule.multiple_of and value % rule.multiple_of:
            raise fail(f"a multiple of {rule.multiple_of}")
    elif kind == "str" and rule.choices:
        ok = (
            re.fullmatch(rule.pattern, value) if rule.pattern is not None else value in rule.choices
        )
        if not ok:
            others = "".join(f" or {_KIND_TEXT[k]}" for k in kinds if k != "str")
            raise fail(f"one of {', '.join(rule.choices)}{others}")
    elif kind == "list":
        if rule.length is not None and len(value) != rule.length:
            raise fail(f"a list of {rule.length} items")
        if rule.items is not None:
            value = [
                _check_value(item, rule.items, rule.items.types, f"{where}[{i}]", source)
                for i, item in enumerate(value)
            ]
    return value


def check_keys(
    cfg: dict[str, Any], reference: dict[str, Any], source: str, prefix: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``cfg`` (a whole config or a part merged into one) checked against ``reference`` (the base
    config) and returned normalised (``"1e-3"`` -> 0.001 where a number is expected).

    Every key must exist in ``reference``; every value must have the reference value's type (or
    the kinds :data:`RULES` declares) and pass the key's rule. The contents of :data:`FREE_FORM`
    mappings are not checked. A failure is a ConfigError naming ``source``, the dotted key, what
    was expected and the value.
    """
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = (*prefix, key)
        where = ".".join(map(str, path))
        if key not in reference:
            valid = ", ".join(sorted(k for k in reference if k != BASE_KEY))
            label = ".".join(prefix) or "top level"
            raise ConfigError(f"{source}: unknown key {where!r}; valid keys at {label}: {valid}")
        base = reference[key]
        rule = RULES.get(where, Rule())
        kinds = rule.types or (() if base is None else (_kind(base),))
        value = _check_value(value, rule, kinds, where, source)
        if isinstance(value, dict) and isinstance(base, dict) and path not in FREE_FORM:
            value = check_keys(value, base, source, path)
        out[key] = value
    return out


def check_size_list(values: Any, where: str, source: str) -> list[int]:
    """``values`` as a list of input sizes (``eval.test_sizes``, ``bench.sizes``), returned sorted
    without repeats: a non-empty list of integers that each pass the size rule of :data:`RULES`
    (>= 1 and a multiple of 32, the coarsest stride). A failure is the ConfigError the config
    checks raise, naming ``source`` and the item (``source: where[1] must be a multiple of 32,
    got 100``)."""
    if isinstance(values, tuple):
        values = list(values)
    values = _check_value(values, Rule(types=("list",)), ("list",), where, source)
    if not values:
        raise ConfigError(f"{source}: {where} must be a non-empty list, got []")
    return sorted(
        {_check_value(v, _SIZE, ("int",), f"{where}[{i}]", source) for i, v in enumerate(values)}
    )


def _load_with_bases(
    path: Path, seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (merged config, root base config) following ``_base_`` links."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular {BASE_KEY} chain")
    data = read_yaml(path)
    base_name = data.pop(BASE_KEY, None)
    if base_name is None:  # the base file: its own values must pass the rules too
        data = check_keys(data, data, str(path))
        return data, data
    parent, root = _load_with_bases(path.parent / base_name, (*seen, path))
    data = check_keys(data, root, str(path))
    return deep_merge(parent, data), root


def load_params(params_path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    return read_yaml(params_path)


def profile_overrides(
    params: dict[str, Any], profile: str | None, params_path: str
) -> tuple[str, dict[str, Any]]:
    """The profile's name and its overrides: ``profile``, else params' ``profile:``, else
    ``default`` when the key is absent. An undefined name, or a ``profile:`` key left empty, is a
    ConfigError naming the params file and the defined ones."""
    profiles = params.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{params_path}: profiles must be a mapping, got {_show(profiles)}")
    if profile is None and "profile" in params and params["profile"] in (None, ""):
        raise ConfigError(
            f"{params_path}: `profile:` is empty; name one of the defined profiles "
            f"({', '.join(map(str, profiles))}) or remove the key for `default`"
        )
    name = profile or params.get("profile") or "default"
    if name not in profiles:
        origin = " (its `profile:` key)" if not profile and params.get("profile") else ""
        raise ConfigError(
            f"{params_path}: unknown profile {name!r}{origin}; "
            f"defined profiles: {', '.join(map(str, profiles))}"
        )
    overrides = profiles[name] or {}
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{params_path}: profile {name!r} must be a mapping, got {_show(overrides)}"
        )
    return name, overrides


# A profile's key for settings of single experiments, applied after the profile's own (e.g. the
# backbone pretraining run, which the profile trains longer than the fusion runs).
PER_EXPERIMENT = "experiments"


def _experiment_overrides(table: Any, name: str, params_path: Any) -> dict[str, Any]:
    """The profile's ``experiments.<name>`` settings ({} when it has none)."""
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(
            f"{params_path}: a profile's `{PER_EXPERIMENT}` must map experiment names to "
            f"settings, got {_show(table)}"
        )
    return table.get(name) or {}


def load_experiment(
    path: str | os.PathLike[str],
    profile: str | None = None,
    params_path: str | os.PathLike[str] | None = DEFAULT_PARAMS,
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Load ``experiments/<name>.yaml`` with its bases, then apply the profile and overrides.

    The result has ``name`` and ``profile`` filled in. The name is the file's own ``name:`` if
    it sets one, else ``name`` (the pipeline passes the path below ``experiments/``, e.g.
    ``fusion/asff``), else the file's stem.
    """
    path = Path(path)
    cfg, root = _load_with_bases(path)
    cfg["name"] = read_yaml(path).get("name") or name or path.stem
    prof_name = profile or "none"
    if params_path is not None and Path(params_path).is_file():
        params = load_params(params_path)
        prof_name, prof = profile_overrides(params, profile, str(params_path))
        prof = dict(prof)
        own = _experiment_overrides(prof.pop(PER_EXPERIMENT, None), cfg["name"], params_path)
        source = f"{params_path} (profile {prof_name!r})"
        cfg = deep_merge(cfg, check_keys(prof, root, source))
        if own:
            where = f"{source[:-1]}, {PER_EXPERIMENT}.{cfg['name']})"
            cfg = deep_merge(cfg, check_keys(own, root, where))
    elif profile is not None:
        raise ConfigError(f"{params_path}: file not found (needed for profile {profile!r})")
    if overrides:
        cfg = deep_merge(cfg, check_keys(overrides, root, "overrides"))
    cfg = check_keys(cfg, root, f"{path} (merged config)")
    cfg["profile"] = prof_name
    return cfg


def parse_override(text: str) -> dict[str, Any]:
    """``train.epochs=3`` -> ``{"train": {"epochs": 3}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, value = text.split("=", 1)
    node: dict[str, Any] = {}
    cur = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cur[part] = {}
        cur = cur[part]
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str) and _EXPONENT_FLOAT.fullmatch(parsed.strip()):
        parsed = float(parsed)
    cur[parts[-1]] = parsed
    return node


def check_dataset_param(cfg: dict[str, Any], params_path: str, explicit_profile: bool) -> None:
    """params.yaml's top-level ``dataset`` (what dvc.yaml declares as the data dependency) must
    be the folder the active profile reads, or DVC would track the wrong data."""
    if explicit_profile or not Path(params_path).is_file():
        return
    dataset = load_params(params_path).get("dataset")
    if dataset is not None and Path(dataset) != Path(cfg["data"]["root"]):
        raise ConfigError(
            f"{params_path}: profile {cfg['profile']!r} reads data.root={cfg['data']['root']!r} "
            f"but `dataset` is {dataset!r}; set both, e.g. "
            f"dvc exp run -S profile={cfg['profile']} -S dataset={cfg['data']['root']}"
        )


def resolve_run(
    experiment: str,
    seed: int | None = None,
    profile: str | None = None,
    params_path: str = DEFAULT_PARAMS,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The merged config of one run: experiment ``experiment`` (a name below experiments/ or a
    YAML path) at ``seed``, under ``profile`` of ``params_path``, with ``--set`` ``overrides``.
    The command line and ``study configure`` both resolve runs here."""
    merged: dict[str, Any] = {}
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    if seed is not None:
        merged = deep_merge(merged, {"train": {"seed": seed}})
    path = experiment_path(experiment)
    cfg = load_experiment(path, profile, params_path, merged, experiment_name(path))
    check_dataset_param(cfg, params_path, explicit_profile=profile is not None)
    return cfg


PRETRAIN_KEYS = ("experiment", "seed", "out")


def pretrain_settings(params: dict[str, Any], source: str = DEFAULT_PARAMS) -> dict[str, Any]:
    """params.yaml ``pretrain``: ``experiment`` (below experiments/), ``seed``, ``out`` (the
    backbone file the profiles' ``model.backbone_weights`` name)."""
    settings = params.get("pretrain")
    if not isinstance(settings, dict) or sorted(settings) != sorted(PRETRAIN_KEYS):
        raise ConfigError(
            f"{source}: `pretrain` must be a mapping with the keys {', '.join(PRETRAIN_KEYS)}, "
            f"got {_show(settings)}"
        )
    seed = settings["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{source}: pretrain.seed must be an integer >= 0, got {seed!r}")
    for key in ("experiment", "out"):
        if not isinstance(settings[key], str) or not settings[key]:
            raise ConfigError(f"{source}: pretrain.{key} must be a path, got {settings[key]!r}")
    return settings


def resolve_pretrain(params_path: str = DEFAULT_PARAMS) -> tuple[dict[str, Any], Path]:
    """The pretraining run's resolved config and its output file; a run that would load its
    own output is a ConfigError."""
    settings = pretrain_settings(load_params(params_path), params_path)
    cfg = resolve_run(settings["experiment"], settings["seed"], None, params_path)
    own, out = cfg["model"]["backbone_weights"], Path(settings["out"])
    if own and Path(own) == out:
        raise ConfigError(
            f"{params_path}: the pretraining run {settings['experiment']} would load its own "
            f"output {own}: give it model.backbone_weights: null in the profile's "
            f"`{PER_EXPERIMENT}` settings"
        )
    return cfg, out
