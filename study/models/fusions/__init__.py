"""Feature-fusion strategies: what sits between the neck and the per-level heads.

A strategy is one module in this package (imported automatically) that registers a builder::

    @FUSIONS.register("name")
    def name(in_channels, out_channels, *, rfb=False, <its own keyword arguments>) -> nn.Module

``in_channels`` are the neck's ``[P5, P4, P3]`` channels (stride 32, 16, 8), ``out_channels`` the
heads' (1024, 512, 256 times width); ``rfb`` says whether the heads carry RFB blocks (ASFF*). The
module's ``forward(feats, return_weights=False)`` returns the three fused maps and, with
``return_weights``, also one weight map per output level, ``(B, 3, H_l, W_l)``: the share of
input levels 0, 1, 2 at each location (None for a strategy without weights). A strategy with
weights honours its per-level modules' ``detach_weights`` flag (``resize.LevelResize``): when set,
the weights are treated as constants in the backward pass, as the paper's section 3.3 argues
(``study analyze`` measures the gradients both ways). The builder's own keyword arguments are
the experiment file's ``model.fusion_args``, checked by name.

Adding a strategy: this module + ``experiments/fusion/<name>.yaml`` (``model.fusion: <name>``)
+ its name in params.yaml ``fusions``; the registry-walking tests then build, run and train it.
The building blocks the strategies share (``resize.py``: ``LevelResize``, ``PerLevelFusion``,
``OwnLevel``, ``expand_conv``, ``widen_conv``) are re-exported here for a new strategy to use.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from torch import nn

from study.errors import ConfigError
from study.models.fusions.resize import (
    LevelResize,
    OwnLevel,
    PerLevelFusion,
    expand_conv,
    widen_conv,
)
from study.registry import Registry

__all__ = [
    "FUSIONS",
    "LevelResize",
    "OwnLevel",
    "PerLevelFusion",
    "build_fusion",
    "check_fusion_args",
    "expand_conv",
    "fusion_arguments",
    "widen_conv",
]

FUSIONS: Registry = Registry("fusion")
# Arguments every builder receives from the model spec; the rest are the strategy's own.
SPEC_ARGUMENTS = ("in_channels", "out_channels", "rfb")


def fusion_arguments(name: str) -> dict[str, Any]:
    """A strategy's own keyword arguments and their defaults (``inspect.Parameter.empty`` if
    required)."""
    params = inspect.signature(FUSIONS.get(name)).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in SPEC_ARGUMENTS and p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def check_fusion_args(name: str, args: dict[str, Any] | None, source: str = "fusion_args") -> None:
    """ConfigError naming ``source`` for an unknown strategy, an unknown or missing argument."""
    if name not in FUSIONS:
        raise ConfigError(
            f"{source}: unknown fusion {name!r}; registered: {', '.join(FUSIONS.names())}"
        )
    valid = fusion_arguments(name)
    unknown = sorted(set(args or {}) - set(valid))
    if unknown:
        listed = ", ".join(sorted(valid)) or "none"
        raise ConfigError(
            f"{source}: fusion {name!r} has no argument(s) {', '.join(unknown)}; valid: {listed}"
        )
    missing = [
        k for k, d in valid.items() if d is inspect.Parameter.empty and k not in (args or {})
    ]
    if missing:
        raise ConfigError(f"{source}: fusion {name!r} needs argument(s) {', '.join(missing)}")


def build_fusion(
    name: str,
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    rfb: bool = False,
    args: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a registered strategy (KeyError if unknown) with its own ``args`` (checked)."""
    builder = FUSIONS.get(name)
    check_fusion_args(name, args)
    return builder(in_channels, out_channels, rfb=rfb, **(args or {}))


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
