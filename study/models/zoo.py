"""Registered model variants. A variant is data: a spec naming registered parts.

``build_model(name, num_classes=80, **overrides)`` builds any variant; overrides replace spec
entries (``width=0.25``, ``fusion="sum"``, ``fusion_args={...}``, ``anchors="official"``) and are
checked.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from study.anchors import ANCHOR_MASKS, STRIDES, resolve_anchors
from study.errors import ConfigError
from study.models.backbone import BACKBONES
from study.models.blocks import scaled
from study.models.detector import Detector
from study.models.fusions import build_fusion, check_fusion_args
from study.models.head import HEADS
from study.models.neck import NECKS

# Spec fields: backbone, neck (+ spp), fusion (+ its own arguments), head, rfb, width, depth,
# anchors.
DEFAULT_SPEC: dict[str, Any] = {
    "backbone": "darknet53",
    "neck": "yolov3",
    "spp": True,
    "fusion": "none",
    "fusion_args": {},
    "head": "ga",
    "rfb": False,
    "width": 1.0,
    "depth": 1.0,
    "anchors": "yolov3",
}

VARIANTS: dict[str, dict[str, Any]] = {
    # The original YOLOv3 (Darknet-53, 3 anchors per level, no SPP, no guided anchoring).
    "yolov3-original": {"spp": False, "head": "yolov3"},
    # YOLOv3 with the strong baseline's neck (SPP) and the plain head: the base on which the
    # fusion study compares strategies (the guided-anchoring head costs ~3x per step on a CPU).
    "yolov3-spp": {"head": "yolov3"},
    # The paper's strong baseline as the official code builds it: SPP + guided-anchoring head
    # with an anchor-free slot (the training tricks are switches in the experiment files).
    "baseline": {},
    # + ASFF on top of the YOLOv3 neck.
    "asff": {"fusion": "asff"},
    # ASFF*: + RFB in the heads (DropBlock is a training-time schedule, see train.dropblock).
    "asff-star": {"fusion": "asff", "rfb": True},
}


def register_variant(name: str, **spec: Any) -> None:
    """Add a variant (e.g. a new fusion) so build_model and the registry-walking tests see it."""
    if name in VARIANTS:
        raise KeyError(f"model variant {name!r} is already registered")
    unknown = set(spec) - set(DEFAULT_SPEC)
    if unknown:
        raise KeyError(f"unknown spec keys {sorted(unknown)}; valid: {sorted(DEFAULT_SPEC)}")
    VARIANTS[name] = spec


def available() -> list[str]:
    """Names of all registered model variants."""
    return sorted(VARIANTS)


def model_spec(name: str, **overrides: Any) -> dict[str, Any]:
    if name not in VARIANTS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}")
    unknown = set(overrides) - set(DEFAULT_SPEC)
    if unknown:
        raise KeyError(f"unknown model overrides {sorted(unknown)}; valid: {sorted(DEFAULT_SPEC)}")
    return {**DEFAULT_SPEC, **VARIANTS[name], **overrides, "name": name}


def build_model(name: str, num_classes: int = 80, **overrides: Any) -> nn.Module:
    """Build a registered variant (see ``available()``)."""
    spec = model_spec(name, **overrides)
    spec["fusion_args"] = dict(spec["fusion_args"] or {})
    width, depth = float(spec["width"]), float(spec["depth"])
    anchors = resolve_anchors(spec["anchors"])
    backbone = BACKBONES.get(spec["backbone"])(width=width, depth=depth)
    neck = NECKS.get(spec["neck"])(backbone.out_channels, width=width, spp=spec["spp"])
    head_in = (scaled(1024, width), scaled(512, width), scaled(256, width))
    fusion = build_fusion(
        spec["fusion"], neck.out_channels, head_in, rfb=spec["rfb"], args=spec["fusion_args"]
    )
    head_cls = HEADS.get(spec["head"])
    heads = [
        head_cls(
            in_ch=head_in[lvl],
            num_classes=num_classes,
            stride=STRIDES[lvl],
            anchors=[anchors[i] for i in ANCHOR_MASKS[lvl]],
            rfb=spec["rfb"],
        )
        for lvl in range(3)
    ]
    spec["num_classes"] = num_classes
    return Detector(backbone, neck, fusion, heads, anchors, num_classes, spec)


def model_overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    """``build_model`` keywords of an experiment's ``model`` section (beyond its name)."""
    m = cfg["model"]
    over = {"width": m["width"], "depth": m["depth"], "anchors": m["anchors"]}
    over.update(m.get("overrides") or {})
    if m.get("fusion") is not None:
        over["fusion"] = m["fusion"]
    if m.get("fusion_args"):
        over["fusion_args"] = dict(m["fusion_args"])
    return over


def check_model_config(cfg: dict[str, Any], source: str) -> None:
    """The one check of a config's ``model`` section against the registries: a registered
    variant, a registered fusion with its own arguments. A ConfigError names ``source``."""
    m = cfg["model"]
    if m["name"] not in VARIANTS:
        raise ConfigError(
            f"{source}: model.name {m['name']!r} is not a registered variant; "
            f"available: {', '.join(available())}"
        )
    if m["fusion"] is not None or m["fusion_args"]:
        fusion = m["fusion"] or model_spec(m["name"])["fusion"]
        check_fusion_args(fusion, m["fusion_args"], f"{source}: model.fusion_args")


def build_model_from_config(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    """The model a run's config describes (``model`` section), checked first."""
    check_model_config(cfg, "model")
    return build_model(cfg["model"]["name"], num_classes=num_classes, **model_overrides(cfg))
