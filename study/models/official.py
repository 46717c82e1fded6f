"""Import (and export) checkpoints of the official ASFF code (GOATmessi8/ASFF).

The official repository releases three detectors and one backbone, all saved as bare
``state_dict`` files with the official module names:

========================  =============================  =====================================
official model            our variant                    official key families
========================  =============================  =====================================
``baseline``              ``baseline``                   ``module_list.0`` .. ``module_list.37``
``asff``                  ``asff``                       ``module_list.0`` .. ``module_list.32``,
                                                         ``level_{0,1,2}_fusion``,
                                                         ``level_{0,1,2}_header``
``asff-star``             ``asff-star``                  as ``asff``, plus
                                                         ``level_*_header.Feature_adaption.rfb``
``darknet53_feature_mx``  the Darknet-53 backbone of     ``module_list.0`` .. ``module_list.10``
                          any variant (pretraining)
========================  =============================  =====================================

There is no official checkpoint of the original YOLOv3 (``yolov3-original``); its Darknet-53 can
still take ``darknet53_feature_mx`` (``load_official(model, path, "darknet53_feature_mx")``).

The key mapping is an explicit table of module-prefix renamings (``PREFIX_TABLES``): the layers
inside each module carry the same names in both codes (``conv``, ``batch_norm``, ``module_list.i.j``
of the residual blocks, ``branch_k.j`` of RFB, ``stride_level_1`` ... of ASFF), so a key maps by
replacing its longest listed prefix. BatchNorm buffers (``running_mean``, ``running_var``,
``num_batches_tracked``) map like the parameters.

Anchors: ``load_official`` changes weights only. The official models were trained with the
official anchor set (last anchor (121, 240)), so build the model with
``build_model(name, anchors="official")`` before loading (the CLI does); ``load_official`` warns
and records ``anchors_official: False`` in its report when the model's anchors differ.

The official deformable convolution (their DCNv2 port, ``utils/DCN``) and ``torchvision.ops``
use the same offset layout: per deformable group, ``2 * kh * kw`` channels ordered
``(dy_0, dx_0, dy_1, dx_1, ...)`` over kernel positions row-major, and the same bilinear
sampling with zeros outside the map. The weights therefore load without conversion.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from study.anchors import OFFICIAL_ANCHORS
from study.errors import CheckpointError
from study.models.zoo import VARIANTS

BACKBONE_NAME = "darknet53_feature_mx"
OFFICIAL_MODELS = ("baseline", "asff", "asff-star")

# ---------------------------------------------------------------------------------------------
# The mapping tables: official module prefix -> our module prefix.
# ---------------------------------------------------------------------------------------------

# Darknet-53: module_list.0 is the stem, then (downsampling conv, residual blocks) per stage.
_BACKBONE: dict[str, str] = {
    "module_list.0": "backbone.stem",
    "module_list.1": "backbone.stages.0.0",
    "module_list.2": "backbone.stages.0.1",
    "module_list.3": "backbone.stages.1.0",
    "module_list.4": "backbone.stages.1.1",
    "module_list.5": "backbone.stages.2.0",
    "module_list.6": "backbone.stages.2.1",
    "module_list.7": "backbone.stages.3.0",
    "module_list.8": "backbone.stages.3.1",
    "module_list.9": "backbone.stages.4.0",
    "module_list.10": "backbone.stages.4.1",
}

# The stride-32 part of the neck, identical in both official files
# (13 = SPP and 16 = DropBlock have no parameters).
_NECK_LEVEL0: dict[str, str] = {
    "module_list.11": "neck.level0.0",
    "module_list.12": "neck.level0.1",
    "module_list.14": "neck.level0.3",
    "module_list.15": "neck.level0.4",
    "module_list.17": "neck.level0_out",
}


def _head(official: str, ours: str) -> dict[str, str]:
    """A guided-anchoring head: same inner names except ``Feature_adaption``."""
    return {official: ours, f"{official}.Feature_adaption": f"{ours}.feature_adaption"}


# models/yolov3_baseline.py: the heads sit inside module_list (19, 28, 37), each preceded by the
# 3x3 conv that our NoFusion holds for levels 0 and 1 (18, 27); for level 2 that conv (36) is the
# neck's last layer. 21 and 30 are upsamplers, 24 and 33 DropBlocks.
_BASELINE: dict[str, str] = {
    **_BACKBONE,
    **_NECK_LEVEL0,
    "module_list.18": "fusion.convs.0",
    **_head("module_list.19", "heads.0"),
    "module_list.20": "neck.lateral1",
    "module_list.22": "neck.level1.0",
    "module_list.23": "neck.level1.1",
    "module_list.25": "neck.level1_out.0",
    "module_list.26": "neck.level1_out.1",
    "module_list.27": "fusion.convs.1",
    **_head("module_list.28", "heads.1"),
    "module_list.29": "neck.lateral2",
    "module_list.31": "neck.level2.0",
    "module_list.32": "neck.level2.1",
    "module_list.34": "neck.level2_out.0",
    "module_list.35": "neck.level2_out.1",
    "module_list.36": "neck.level2_out.2",
    **_head("module_list.37", "heads.2"),
}

# models/yolov3_asff.py: module_list is backbone + neck only (19 and 26 upsamplers, 22 and 29
# DropBlocks); fusions and heads are attributes level_<l>_fusion / level_<l>_header.
_ASFF: dict[str, str] = {
    **_BACKBONE,
    **_NECK_LEVEL0,
    "module_list.18": "neck.lateral1",
    "module_list.20": "neck.level1.0",
    "module_list.21": "neck.level1.1",
    "module_list.23": "neck.level1_out.0",
    "module_list.24": "neck.level1_out.1",
    "module_list.25": "neck.lateral2",
    "module_list.27": "neck.level2.0",
    "module_list.28": "neck.level2.1",
    "module_list.30": "neck.level2_out.0",
    "module_list.31": "neck.level2_out.1",
    "module_list.32": "neck.level2_out.2",
    **{f"level_{lvl}_fusion": f"fusion.levels.{lvl}" for lvl in range(3)},
    **{k: v for lvl in range(3) for k, v in _head(f"level_{lvl}_header", f"heads.{lvl}").items()},
}

PREFIX_TABLES: dict[str, dict[str, str]] = {
    "baseline": _BASELINE,
    "asff": _ASFF,
    "asff-star": _ASFF,  # the RFB block keeps its name: ...Feature_adaption.rfb.branch_k.j
    BACKBONE_NAME: _BACKBONE,
}

_BN_COUNTER = "num_batches_tracked"
_SHOW = 20  # keys listed per problem group in error messages


def _table(model_name: str) -> dict[str, str]:
    if model_name not in PREFIX_TABLES:
        hint = (
            " (the official code releases no original-YOLOv3 checkpoint; its backbone can "
            f"load {BACKBONE_NAME!r})"
            if model_name == "yolov3-original"
            else ""
        )
        raise CheckpointError(
            f"no official checkpoint format for model {model_name!r}{hint}; "
            f"known: {', '.join(PREFIX_TABLES)}"
        )
    return PREFIX_TABLES[model_name]


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    """Replace the longest prefix of ``key`` (at a ``.`` boundary) listed in ``table``."""
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in table:
            return ".".join([table[prefix], *parts[n:]])
    return None


def _map_keys(state: Mapping[str, Any], table: Mapping[str, str]) -> tuple[dict, dict, list]:
    """-> (mapped {new: value}, origin {new: old}, unmapped old keys)."""
    mapped: dict[str, Any] = {}
    origin: dict[str, str] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        new = _rename(key, table)
        if new is None:
            unmapped.append(key)
            continue
        if new in mapped:
            raise CheckpointError(f"keys {origin[new]!r} and {key!r} both map to {new!r}")
        mapped[new], origin[new] = value, key
    return mapped, origin, unmapped


def official_state_dict_to_ours(state: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    """Rename an official ``state_dict`` (already unwrapped, see ``read_checkpoint``) to our keys.

    ``model_name``: ``baseline``, ``asff``, ``asff-star`` or ``darknet53_feature_mx``. A
    ``module.`` (DataParallel/DDP) prefix is stripped. Keys the table does not know raise
    ``CheckpointError``; whether the result fits a model is checked by ``load_official``.
    """
    mapped, _, unmapped = _map_keys(_strip_module(state), _table(model_name))
    unmapped.sort(key=_natural)
    if unmapped:
        raise CheckpointError(
            f"keys not in the official {model_name!r} layout " + _listing(unmapped)
        )
    return mapped


def export_official(model: nn.Module, model_name: str) -> dict[str, Tensor]:
    """Our ``model.state_dict()`` under the official key names (the inverse of the import).

    The result loads into the official code (``model.load_state_dict(...)``) and back through
    ``load_official``. ``model_name`` as for ``official_state_dict_to_ours``.
    """
    inverse = {ours: official for official, ours in _table(model_name).items()}
    out: dict[str, Tensor] = {}
    unmapped = []
    for key, value in model.state_dict().items():
        new = _rename(key, inverse)
        if new is None:
            if model_name == BACKBONE_NAME:
                continue  # only the backbone is exported
            unmapped.append(key)
            continue
        out[new] = value.detach().clone()
    if unmapped:
        raise CheckpointError(
            f"model keys with no official name for {model_name!r} " + _listing(unmapped)
        )
    return out


def guess_official_layout(state: Mapping[str, Any]) -> str | None:
    """Which official layout a (stripped) state_dict's key names suggest, or None."""
    keys = list(state)
    if any(k.startswith("level_0_fusion.") for k in keys):
        return "asff-star" if any(".Feature_adaption.rfb." in k for k in keys) else "asff"
    if any(k.startswith("module_list.37.") for k in keys):
        return "baseline"
    indices = {
        int(k.split(".")[1])
        for k in keys
        if k.startswith("module_list.") and k.split(".")[1].isdigit()
    }
    if indices and max(indices) <= 10:
        return BACKBONE_NAME
    return None


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop DataParallel/DDP's ``module.`` prefix (no official key starts with it)."""
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _unwrap(obj: Any, source: str) -> dict[str, Tensor]:
    """A bare state_dict, ``{"model": sd}``, ``{"state_dict": sd}`` or a pickled module."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping):
            for wrapper in ("model", "state_dict"):
                inner = obj.get(wrapper)
                if isinstance(inner, nn.Module):
                    inner = inner.state_dict()
                if isinstance(inner, Mapping):
                    obj = inner
                    break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source}: expected a state_dict (a mapping of tensors), got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: not a state_dict, entries that are not tensors " + _listing(bad)
        )
    return _strip_module(obj)


def read_checkpoint(
    path_or_state: str | os.PathLike | Mapping[str, Any], trust: bool = False
) -> tuple[dict[str, Tensor], str]:
    """Load a checkpoint file (or take a state dict) -> (flat state_dict, description).

    Files are read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
    containers only. A file that needs arbitrary unpickling is refused with a CheckpointError
    unless ``trust=True`` (only for files from a source you trust: unpickling runs code).
    """
    if isinstance(path_or_state, Mapping) or isinstance(path_or_state, nn.Module):
        return _unwrap(path_or_state, "state dict"), "<state dict>"
    path = Path(path_or_state)
    source = str(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {source}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) and "Unsupported" in str(exc):
            if not trust:
                lines = str(exc).strip().splitlines()
                detail = next((ln for ln in lines if "Unsupported" in ln), lines[0])
                detail = detail.split(". ")[0].strip()
                raise CheckpointError(
                    f"{source}: holds pickled objects besides tensors, refused by "
                    f"torch.load(weights_only=True) ({detail.strip()}); if you trust the file, "
                    "pass --trust / trust=True (this unpickles arbitrary code)"
                ) from None
            obj = _load_trusted(path, source)
        else:
            raise CheckpointError(
                f"{source}: not a readable PyTorch checkpoint "
                f"(corrupt or not a torch file: {_short(exc)})"
            ) from None
    except Exception as exc:  # noqa: BLE001  truncated zip, EOF, wrong format ...
        raise CheckpointError(
            f"{source}: not a readable PyTorch checkpoint "
            f"(truncated, corrupt or not a torch file: {_short(exc)})"
        ) from None
    return _unwrap(obj, source), source


def _load_trusted(path: Path, source: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"{source}: not a readable PyTorch checkpoint ({_short(exc)})"
        ) from None


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _listing(keys: list[str], show: int = _SHOW) -> str:
    head = ", ".join(keys[:show])
    more = f", ... ({len(keys) - show} more)" if len(keys) > show else ""
    return f"[{len(keys)}]: {head}{more}"


# ---------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------


def load_official(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping[str, Any],
    model_name: str,
    backbone_only: bool = False,
    trust: bool = False,
) -> dict:
    """Load an official ASFF checkpoint into our ``model``; returns a report dict.

    ``model_name`` names the checkpoint's official layout: ``baseline``, ``asff``,
    ``asff-star`` (a full detector, loaded into ``build_model(model_name, anchors="official")``)
    or ``darknet53_feature_mx`` (the pretrained Darknet-53, loaded into any variant's backbone).
    ``backbone_only=True`` takes only the Darknet-53 part (``module_list.0`` .. ``10``) of a
    full checkpoint and leaves the rest of ``model`` untouched.

    Everything is checked before anything is copied: keys the mapping does not know
    (unexpected), model keys the checkpoint lacks (missing) and shape mismatches raise one
    ``CheckpointError`` listing all of them; the model is then unchanged. BatchNorm
    ``num_batches_tracked`` counters are set to 0 and
    reported under ``filled`` when the checkpoint has none of them (older PyTorch files).
    Half-precision checkpoints are cast to the model's dtype.

    Anchors are not part of the weights: ``load_official`` does not change them (see the module
    docstring); the report's ``anchors_official`` says whether the model uses the official set.
    """
    state, source = read_checkpoint(path_or_state, trust=trust)
    backbone_only = backbone_only or model_name == BACKBONE_NAME
    if backbone_only and model_name not in PREFIX_TABLES and model_name in VARIANTS:
        model_name = BACKBONE_NAME  # e.g. yolov3-original: its Darknet-53 takes the backbone file
    table = _table(model_name)
    mapped, origin, unmapped = _map_keys(state, table)

    ignored: list[str] = []
    if backbone_only:
        mapped, unmapped, ignored = _backbone_part(mapped, origin, unmapped)
    target = _target_state(model, backbone_only)
    inverse = {ours: official for official, ours in table.items()}
    filled = _fill_bn_counters(mapped, origin, target, inverse)

    problems = _problems(mapped, origin, unmapped, target, inverse)
    if problems:
        raise _misfit(problems, state, source, model_name, backbone_only)

    dtypes = sorted(
        {str(v.dtype).replace("torch.", "") for v in mapped.values() if v.is_floating_point()}
    )
    result = model.load_state_dict(mapped, strict=not backbone_only)
    if backbone_only:  # the check above makes these empty; keep load_state_dict honest
        assert not result.unexpected_keys, result.unexpected_keys

    anchors_official = _has_official_anchors(model)
    if not backbone_only and not anchors_official:
        warnings.warn(
            f"loaded official {model_name!r} weights into a model whose anchors are not "
            "the official set; build it with anchors='official'",
            stacklevel=2,
        )
    return {
        "source": source,
        "model_name": model_name,
        "backbone_only": backbone_only,
        "loaded": len(mapped) - len(filled),
        "parameters": int(sum(p.numel() for k, p in model.named_parameters() if k in mapped)),
        "filled": filled,
        "ignored": ignored,
        "dtypes": dtypes,
        "anchors_official": anchors_official,
    }


def _backbone_part(
    mapped: dict[str, Any], origin: dict[str, str], unmapped: list[str]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Keep the Darknet-53 keys; skip (and report) the rest of any official detector.

    -> (mapped backbone keys, still unmapped keys, ignored official keys sorted naturally).
    """
    keep = {k: v for k, v in mapped.items() if _rename(origin[k], _BACKBONE) is not None}
    ignored = [origin[k] for k in mapped if k not in keep]
    ignored += [k for k in unmapped if _rename(k, _BASELINE) or _rename(k, _ASFF)]
    unmapped = [k for k in unmapped if k not in ignored]
    ignored.sort(key=_natural)
    return keep, unmapped, ignored


def _target_state(model: nn.Module, backbone_only: bool) -> dict[str, Tensor]:
    """The model's state to fill: all of it, or only its Darknet-53 backbone."""
    target = model.state_dict()
    if backbone_only:
        inverse_bb = {v: k for k, v in _BACKBONE.items()}
        target = {k: v for k, v in target.items() if _rename(k, inverse_bb) is not None}
        if not target:
            raise CheckpointError(
                f"model {type(model).__name__} has no Darknet-53 backbone "
                "(no 'backbone.*' keys) to load official weights into"
            )
    return target


def _official_name(our_key: str, inverse: Mapping[str, str]) -> str:
    """The official name of one of our keys (``inverse``: our prefix -> official prefix)."""
    return _rename(our_key, inverse) or "(no official name)"


def _fill_bn_counters(
    mapped: dict[str, Any],
    origin: dict[str, str],
    target: Mapping[str, Tensor],
    inverse: Mapping[str, str],
) -> list[str]:
    """Old-format checkpoints (no BatchNorm counter at all): add zero counters to ``mapped``
    (and their official names to ``origin``) in place; -> the official names filled."""
    filled = []
    old_format = not any(k.endswith("." + _BN_COUNTER) for k in mapped)
    for key in target:
        if old_format and key not in mapped and key.endswith("." + _BN_COUNTER):
            mapped[key] = torch.zeros((), dtype=torch.long)
            origin[key] = _official_name(key, inverse)
            filled.append(origin[key])
    return filled


def _problems(
    mapped: Mapping[str, Tensor],
    origin: Mapping[str, str],
    unmapped: list[str],
    target: Mapping[str, Tensor],
    inverse: Mapping[str, str],
) -> list[str]:
    """One line per kind of misfit: unexpected keys, missing keys, wrong shapes (none: [])."""
    missing = [k for k in target if k not in mapped]
    unexpected = [k for k in mapped if k not in target]
    wrong = [k for k in mapped if k in target and mapped[k].shape != target[k].shape]

    problems = []
    if unmapped or unexpected:
        keys = sorted(unmapped + [origin[k] for k in unexpected], key=_natural)
        problems.append("unexpected keys (in the checkpoint, not in the model) " + _listing(keys))
    if missing:
        keys = sorted((f"{_official_name(k, inverse)} (ours: {k})" for k in missing), key=_natural)
        problems.append("missing keys (in the model, not in the checkpoint) " + _listing(keys))
    if wrong:
        rows = sorted(
            (
                f"{origin[k]} (ours: {k}): checkpoint {tuple(mapped[k].shape)} vs "
                f"model {tuple(target[k].shape)}"
                for k in wrong
            ),
            key=_natural,
        )
        problems.append("wrong shapes " + _listing(rows))
    return problems


def _misfit(
    problems: list[str],
    state: Mapping[str, Any],
    source: str,
    model_name: str,
    backbone_only: bool,
) -> CheckpointError:
    """The error listing every problem, with a hint when the keys suggest another layout."""
    part = " (backbone only)" if backbone_only else ""
    guess = guess_official_layout(state)
    hint = (
        f" (its keys look like an official {guess!r} checkpoint)"
        if guess not in (None, model_name) and not backbone_only
        else ""
    )
    return CheckpointError(
        f"checkpoint {source} does not fit the official {model_name!r} layout{part}{hint}; "
        "nothing was loaded:\n  " + "\n  ".join(problems)
    )


def _has_official_anchors(model: nn.Module) -> bool:
    """Whether the model's anchors are the official set (not part of the weights)."""
    anchors = getattr(model, "anchors", None)
    return anchors is not None and [tuple(map(float, a)) for a in anchors] == [
        tuple(map(float, a)) for a in OFFICIAL_ANCHORS
    ]


def _natural(key: str) -> tuple:
    """Sort ``module_list.2`` before ``module_list.10``."""
    parts = key.replace(" ", ".").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)
