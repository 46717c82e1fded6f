"""The official-checkpoint importer (study/models/official.py).

The equivalence tests check that our models compute what the official ASFF code computes, without
the official code: ``fixtures/official_keys_<name>.json`` lists the official ``state_dict`` keys and
shapes, ``fixtures/official_reference_<name>.json`` holds the official model's decoded output for
weights drawn by ``seeded_official_state`` (the recipe below, which both the fixture generator and
this test use) on the input ``reference_input``. The references were computed by running the
official code (GOATmessi8/ASFF, eval mode, with ``torchvision.ops.deform_conv2d`` in place of its
CUDA-only DCN, whose offset layout is the same); see each fixture's ``provenance``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from study.errors import CheckpointError
from study.models import build_model
from study.models.official import (
    BACKBONE_NAME,
    export_official,
    load_official,
    official_state_dict_to_ours,
    read_checkpoint,
)

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = ("baseline", "asff", "asff-star")


# ---------------------------------------------------------------------------------------------
# The frozen recipe (also recorded in the reference fixtures): do not change without
# regenerating them from the official code.
# ---------------------------------------------------------------------------------------------


def seeded_official_state(keys_shapes: list, seed: int = 0, gain: float = 1.1) -> dict:
    """Deterministic weights for an official ``state_dict`` from its key/shape list.

    One ``torch.Generator().manual_seed(seed)`` draws, for each key in sorted (string) order:
    BatchNorm (``.batch_norm.``) ``weight`` and ``running_var``: ``rand * 0.5 + 0.5``; its
    ``bias`` and ``running_mean``: ``randn * 0.1``; ``num_batches_tracked``: 0 (no draw);
    any other ``weight``: ``randn * gain / sqrt(fan_in)`` (fan_in = prod(shape[1:])); any other
    ``bias``: ``randn * 0.1``. The fan-in scaling keeps the features alive through the 100+ layers
    (logits of order one, no saturation), so a wrong mapping cannot hide.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(keys_shapes, key=lambda ks: ks[0]):
        leaf, shape = key.rsplit(".", 1)[1], tuple(shape)
        if leaf == "num_batches_tracked":
            state[key] = torch.zeros((), dtype=torch.long)
        elif ".batch_norm." in key:
            if leaf in ("weight", "running_var"):
                state[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
            else:
                state[key] = torch.randn(shape, generator=g) * 0.1
        elif leaf == "weight":
            state[key] = torch.randn(shape, generator=g) * (gain / math.sqrt(math.prod(shape[1:])))
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def reference_input(size: int = 320, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def official_keys(name: str) -> list:
    return json.loads((FIXTURES / f"official_keys_{name}.json").read_text())


def reference(name: str) -> dict:
    return json.loads((FIXTURES / f"official_reference_{name}.json").read_text())


# ---------------------------------------------------------------------------------------------
# Equivalence with the official models
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL)
def test_matches_official_model_output(name: str) -> None:
    ref = reference(name)
    keys = official_keys(name)
    assert ref["recipe"]["seed"] == 0 and ref["recipe"]["gain"] == 1.1
    model = build_model(name, num_classes=80, anchors="official").eval()
    report = load_official(model, seeded_official_state(keys, seed=0, gain=1.1), name)
    assert report["loaded"] == len(keys) and report["anchors_official"]
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    assert (
        report["parameters"]
        == {"baseline": 75_554_428, "asff": 79_409_493, "asff-star": 86_011_821}[name]
    )

    with torch.no_grad():
        out = model.decode(model(reference_input(ref["input"]["size"], ref["input"]["seed"])))[0]
    out = out.double()
    assert list(out.shape) == ref["shape"]
    rows = torch.tensor(ref["rows"], dtype=torch.float64)
    got = out[ref["row_indices"]]
    # Per column: cx, cy up to 320, w, h up to ~1e3, probabilities in (0, 1).
    scale = rows.abs().amax(dim=0).clamp_min(1.0)
    assert ((got - rows).abs() <= 1e-3 * rows.abs() + 1e-4 * scale).all(), (
        f"{name}: max abs diff {(got - rows).abs().max().item():.3g}"
    )
    sums = torch.tensor(ref["column_sums"], dtype=torch.float64)
    torch.testing.assert_close(out.sum(dim=0), sums, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Mapping, export and round trip (small models: the key names do not depend on the width)
# ---------------------------------------------------------------------------------------------


def small(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, num_classes=3, width=0.125, anchors="official").eval()
    for buf_name, buf in model.named_buffers():  # make BN statistics non-trivial
        if buf_name.endswith(("running_mean", "running_var")):
            buf.copy_(torch.rand(buf.shape) + 0.5)
    return model


@pytest.mark.parametrize("name", OFFICIAL)
def test_export_uses_exactly_the_official_keys(name: str) -> None:
    model = build_model(name, num_classes=80, width=0.125, anchors="official")
    exported = export_official(model, name)
    assert sorted(exported) == sorted(k for k, _ in official_keys(name))


@pytest.mark.parametrize("name", OFFICIAL)
def test_round_trip_export_then_load(name: str, tmp_path: Path) -> None:
    src, dst = small(name, 0), small(name, 1)
    path = tmp_path / "official.pth"
    torch.save(export_official(src, name), path)
    report = load_official(dst, path, name)
    assert report["loaded"] == len(src.state_dict()) and report["source"] == str(path)
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst.decode(dst(x)), src.decode(src(x)), rtol=0, atol=0)


def test_mapping_function_renames_to_our_keys() -> None:
    model = small("asff-star")
    mapped = official_state_dict_to_ours(export_official(model, "asff-star"), "asff-star")
    assert mapped.keys() == model.state_dict().keys()
    assert "heads.0.feature_adaption.dconv.weight" in mapped
    assert "fusion.levels.2.weight_levels.bias" in mapped
    assert "backbone.stages.4.1.module_list.3.1.batch_norm.running_var" in mapped
    with pytest.raises(
        CheckpointError,
        match=r"not in the official 'baseline' layout \[210\]: "
        r"level_0_fusion\.expand",
    ):
        official_state_dict_to_ours(export_official(model, "asff-star"), "baseline")
    with pytest.raises(CheckpointError, match="yolov3-original"):
        official_state_dict_to_ours({}, "yolov3-original")


def test_wrappers_and_module_prefix_are_accepted(tmp_path: Path) -> None:
    src = small("baseline", 0)
    state = export_official(src, "baseline")
    ddp = {f"module.{k}": v for k, v in state.items()}
    for i, blob in enumerate(({"model": state}, {"state_dict": ddp}, {"model": ddp, "epoch": 3})):
        path = tmp_path / f"ckpt{i}.pth"
        torch.save(blob, path)
        dst = small("baseline", 1)
        load_official(dst, path, "baseline")
        assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())
    dst = small("baseline", 1)
    load_official(dst, ddp, "baseline")  # an in-memory state dict works too
    key = "heads.2.conv.weight"
    assert torch.equal(dst.state_dict()[key], src.state_dict()[key])


def test_half_precision_checkpoint_is_cast() -> None:
    src, dst = small("asff", 0), small("asff", 1)
    state = {
        k: (v.half() if v.is_floating_point() else v)
        for k, v in export_official(src, "asff").items()
    }
    report = load_official(dst, state, "asff")
    assert report["dtypes"] == ["float16"]
    assert dst.state_dict()["heads.1.guide_wh.weight"].dtype == torch.float32


def test_missing_num_batches_tracked_is_filled() -> None:
    src, dst = small("baseline", 0), small("baseline", 1)
    state = {
        k: v
        for k, v in export_official(src, "baseline").items()
        if not k.endswith("num_batches_tracked")
    }
    report = load_official(dst, state, "baseline")
    assert "module_list.0.batch_norm.num_batches_tracked" in report["filled"]
    assert report["loaded"] == len(state)


def test_anchors_are_not_changed_and_a_non_official_set_warns() -> None:
    src = small("baseline")
    dst = build_model("baseline", num_classes=3, width=0.125)  # default (paper) anchors
    with pytest.warns(UserWarning, match="anchors='official'"):
        report = load_official(dst, export_official(src, "baseline"), "baseline")
    assert report["anchors_official"] is False
    assert dst.anchors[-1] == (373.0, 326.0)


# ---------------------------------------------------------------------------------------------
# Broken checkpoints: one CheckpointError naming every problem, and nothing loaded
# ---------------------------------------------------------------------------------------------


def _assert_untouched(model: torch.nn.Module, before: dict) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was modified by a failed load"


def test_missing_unexpected_and_misshaped_keys_are_all_reported() -> None:
    src, dst = small("asff", 0), small("asff", 1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    state = export_official(src, "asff")
    del state["level_1_fusion.weight_levels.bias"]
    del state["module_list.7.batch_norm.running_var"]
    state["level_3_fusion.weight_levels.bias"] = torch.zeros(3)
    state["module_list.0.conv.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(CheckpointError) as info:
        load_official(dst, state, "asff")
    msg = str(info.value)
    assert "<state dict>" in msg and "nothing was loaded" in msg
    assert "missing keys" in msg and "level_1_fusion.weight_levels.bias" in msg
    assert "module_list.7.batch_norm.running_var" in msg
    assert "unexpected keys" in msg and "level_3_fusion.weight_levels.bias" in msg
    assert "wrong shapes" in msg and "module_list.0.conv.weight" in msg
    assert "(4, 3, 3, 3)" in msg and "(8, 3, 3, 3)" in msg  # both shapes (width 0.125: 8 ch)
    _assert_untouched(dst, before)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_each_corruption_alone_raises_and_names_the_key(problem: str, tmp_path: Path) -> None:
    dst = small("baseline", 1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    state = export_official(small("baseline", 0), "baseline")
    key = "module_list.37.Feature_adaption.dconv.weight"
    if problem == "missing":
        del state[key]
    elif problem == "unexpected":
        key = "module_list.38.conv.weight"
        state[key] = torch.zeros(1)
    else:
        state[key] = state[key][:, :-1]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as info:
        load_official(dst, path, "baseline")
    assert str(path) in str(info.value)
    _assert_untouched(dst, before)


def test_long_problem_lists_are_truncated_with_a_count() -> None:
    dst = small("baseline")
    with pytest.raises(CheckpointError, match=r"missing keys .* \[388\]: .*\(368 more\)") as info:
        load_official(dst, {"module_list.0.conv.weight": torch.zeros(8, 3, 3, 3)}, "asff")
    assert "(no official name) (ours: fusion.convs.0.conv.weight)" in str(info.value)


def test_a_different_official_model_is_refused_with_a_hint() -> None:
    with pytest.raises(CheckpointError, match="unexpected keys.*level_0_fusion") as info:
        load_official(small("baseline"), export_official(small("asff"), "asff"), "asff")
    assert "look like" not in str(info.value)  # the file is right, the model is not
    with pytest.raises(CheckpointError, match="look like an official 'asff-star' checkpoint"):
        load_official(small("asff"), export_official(small("asff-star"), "asff-star"), "asff")
    with pytest.raises(CheckpointError, match="look like an official 'baseline' checkpoint"):
        load_official(small("asff"), export_official(small("baseline"), "baseline"), "asff")


def test_truncated_and_garbage_files_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(export_official(small("baseline"), "baseline"), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint\n" * 20)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    dst = small("baseline")
    for path in (truncated, garbage, empty, tmp_path / "absent.pth"):
        with pytest.raises(CheckpointError, match=path.name):
            load_official(dst, path, "baseline")


class _NotATensor:  # pickled by reference: weights_only=True refuses it
    pass


def test_pickled_objects_are_refused_unless_trusted(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save(
        {"model": export_official(small("baseline"), "baseline"), "extra": _NotATensor()}, path
    )
    with pytest.raises(CheckpointError, match="trust=True") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    state, _ = read_checkpoint(path, trust=True)
    assert "module_list.0.conv.weight" in state
    with pytest.raises(CheckpointError, match="not tensors"):
        read_checkpoint({"a": torch.zeros(1), "b": 3})


# ---------------------------------------------------------------------------------------------
# The pretrained backbone (darknet53_feature_mx) and backbone-only imports
# ---------------------------------------------------------------------------------------------


def _backbone_keys(state: dict) -> dict:
    return {k: v for k, v in state.items() if int(k.split(".")[1]) <= 10}


@pytest.mark.parametrize("target", ["yolov3-original", "baseline", "asff-star"])
def test_backbone_checkpoint_loads_only_darknet53(target: str) -> None:
    src = small("baseline", 0)
    backbone = _backbone_keys(export_official(src, "baseline"))
    assert sorted(backbone) == sorted(export_official(src, BACKBONE_NAME))
    assert sorted(backbone) == sorted(
        k for k, _ in official_keys("baseline") if int(k.split(".")[1]) <= 10
    )
    dst = small(target, 1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = load_official(dst, backbone, BACKBONE_NAME)
    assert report["backbone_only"] and report["loaded"] == len(backbone)
    for key, value in dst.state_dict().items():
        if key.startswith("backbone."):
            assert torch.equal(value, src.state_dict()[key]), key
        else:
            assert torch.equal(value, before[key]), f"{key} changed by a backbone-only load"


def test_backbone_only_from_a_full_checkpoint_ignores_the_rest() -> None:
    src, dst = small("asff", 0), small("baseline", 1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = load_official(dst, export_official(src, "asff"), "asff", backbone_only=True)
    assert "level_0_fusion.weight_levels.weight" in report["ignored"]
    assert all(
        k.startswith(("level_", "module_list.1", "module_list.2", "module_list.3"))
        for k in report["ignored"]
    )
    for key, value in dst.state_dict().items():
        expected = src.state_dict()[key] if key.startswith("backbone.") else before[key]
        assert torch.equal(value, expected), key
    # the CLI passes our variant name: yolov3-original takes the backbone too
    report = load_official(
        small("yolov3-original"),
        export_official(src, "asff"),
        "yolov3-original",
        backbone_only=True,
    )
    assert report["model_name"] == BACKBONE_NAME


def test_backbone_with_a_bad_key_is_refused() -> None:
    backbone = export_official(small("baseline", 0), BACKBONE_NAME)
    backbone["module_list.6.module_list.7.1.conv.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(CheckpointError, match=r"wrong shapes.*module_list\.6\.module_list\.7\.1"):
        load_official(small("asff"), backbone, BACKBONE_NAME)
