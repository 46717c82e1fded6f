"""Experiment configuration: one commented base file, small experiment files, named profiles.

The effective config of a run is ``_base.yaml`` <- ``experiments/<name>.yaml`` <- the profile
in ``params.yaml`` (deep merge, later wins). Every key must exist in the base file: a misspelled
key is an error that lists the valid keys at that level.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from study.errors import ConfigError

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


def check_keys(
    cfg: dict[str, Any], reference: dict[str, Any], source: str, prefix: tuple[str, ...] = ()
) -> None:
    """Raise ConfigError for any key of ``cfg`` that ``reference`` (the base config) lacks."""
    for key, value in cfg.items():
        where = ".".join(map(str, (*prefix, key)))
        if key not in reference:
            valid = ", ".join(sorted(k for k in reference if k != BASE_KEY))
            label = ".".join(prefix) or "top level"
            raise ConfigError(f"{source}: unknown key {where!r}; valid keys at {label}: {valid}")
        if (*prefix, key) in FREE_FORM:
            continue
        if isinstance(value, dict) and isinstance(reference[key], dict):
            check_keys(value, reference[key], source, (*prefix, key))


def _load_with_bases(
    path: Path, seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (merged config, root base config) following ``_base_`` links."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular {BASE_KEY} chain")
    data = read_yaml(path)
    base_name = data.pop(BASE_KEY, None)
    if base_name is None:
        return data, data
    parent, root = _load_with_bases(path.parent / base_name, (*seen, path))
    check_keys(data, root, str(path))
    return deep_merge(parent, data), root


def load_params(params_path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    return read_yaml(params_path)


def profile_overrides(
    params: dict[str, Any], profile: str | None, params_path: str
) -> tuple[str, dict]:
    profiles = params.get("profiles") or {}
    name = profile or params.get("profile") or "default"
    if name not in profiles:
        raise ConfigError(
            f"{params_path}: unknown profile {name!r}; defined profiles: {', '.join(profiles)}"
        )
    return name, profiles[name] or {}


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
        check_keys(prof, root, f"{params_path} (profile {prof_name!r})")
        cfg = deep_merge(cfg, prof)
    elif profile is not None:
        raise ConfigError(f"{params_path}: file not found (needed for profile {profile!r})")
    if overrides:
        check_keys(overrides, root, "overrides")
        cfg = deep_merge(cfg, overrides)
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
    if isinstance(parsed, str) and re.fullmatch(
        r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", parsed.strip()
    ):
        parsed = float(parsed)
    cur[parts[-1]] = parsed
    return node
