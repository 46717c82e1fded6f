"""The model zoo (study/models): sizes, shapes, ASFF, multipliers, registry, anchors, DropBlock."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.anchors import ANCHOR_SETS, OFFICIAL_ANCHORS, YOLOV3_ANCHORS
from study.models import VARIANTS, available, build_model, register_variant
from study.models.blocks import ScheduledDropBlock, conv_bn_act
from study.models.fusions import FUSIONS
from study.models.fusions.asff import ASFFLevel

TINY = {"width": 0.125, "depth": 0.34}
# The paper's / official models' sizes at 80 classes (the official checkpoints' parameter counts
# for baseline, asff and asff-star; Darknet YOLOv3 for yolov3-original).
FULL_PARAMS = {
    "yolov3-original": 61_949_149,
    "baseline": 75_554_428,
    "asff": 79_409_493,
    "asff-star": 86_011_821,
}
SLOTS = {"yolov3-original": 3, "baseline": 4, "asff": 4, "asff-star": 4}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def slots_of(model: nn.Module) -> int:
    head = model.heads[0]
    return getattr(head, "n_slots", None) or len(head.anchors)


# ---------------------------------------------------------------------------------------------
# Full-size models
# ---------------------------------------------------------------------------------------------


def test_registry_has_the_study_variants() -> None:
    assert set(FULL_PARAMS) <= set(available())
    assert available() == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(FULL_PARAMS))
def test_full_size_parameter_count(name: str) -> None:
    model = build_model(name, num_classes=80)
    assert n_params(model) == FULL_PARAMS[name]
    assert model.spec["name"] == name and model.spec["num_classes"] == 80


def test_full_size_forward_at_320() -> None:
    t0 = time.perf_counter()
    for name in sorted(FULL_PARAMS):
        model = build_model(name, num_classes=80).eval()
        with torch.no_grad():
            outs = model(torch.zeros(1, 3, 320, 320))
        a = SLOTS[name]
        assert [tuple(o.raw.shape) for o in outs] == [
            (1, a, 10, 10, 85),
            (1, a, 20, 20, 85),
            (1, a, 40, 40, 85),
        ]
        assert all(torch.isfinite(o.raw).all() for o in outs)
    assert time.perf_counter() - t0 < 60  # about 5 s on two shared cores


# ---------------------------------------------------------------------------------------------
# Every registered variant at tiny width: shapes of the outputs and of decode
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", available())
def test_every_variant_forward_and_decode_shapes(name: str) -> None:
    num_classes = 7
    model = build_model(name, num_classes=num_classes, **TINY).eval()
    a = slots_of(model)
    if name in SLOTS:
        assert a == SLOTS[name]
    for size in (320, 416, 608):
        with torch.no_grad():
            outs = model(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
            dec = model.decode(outs)
        assert [o.stride for o in outs] == [32, 16, 8]
        for out in outs:
            g = size // out.stride
            assert tuple(out.raw.shape) == (1, a, g, g, 5 + num_classes)
            assert tuple(out.anchor_wh.shape) == (1, a, g, g, 2)
            assert out.anchor_free == (a == 4)
        n = a * sum((size // s) ** 2 for s in (32, 16, 8))
        assert tuple(dec.shape) == (1, n, 5 + num_classes)
        assert torch.isfinite(dec).all()
        probs = dec[..., 4:]
        assert probs.min() >= 0 and probs.max() <= 1


@pytest.mark.parametrize(("name", "expected"), [("baseline", 14196), ("yolov3-original", 10647)])
def test_decode_length_at_416(name: str, expected: int) -> None:
    model = build_model(name, num_classes=3, **TINY).eval()
    with torch.no_grad():
        dec = model.predict(torch.zeros(2, 3, 416, 416))
    assert tuple(dec.shape) == (2, expected, 8)


# ---------------------------------------------------------------------------------------------
# ASFF
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["asff", "asff-star"])
def test_asff_weights_are_a_softmax_over_levels(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, **TINY).eval()
    with torch.no_grad():
        outs, weights = model(torch.randn(2, 3, 128, 128), return_fusion_weights=True)
    assert len(weights) == 3
    for w, out, g in zip(weights, outs, (4, 8, 16), strict=True):
        assert tuple(w.shape) == (2, 3, g, g) == (2, 3, *out.raw.shape[2:4])
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones(2, g, g), atol=1e-5, rtol=0)
        assert w.std() > 1e-4  # location-dependent, not a constant 1/3


def test_baseline_has_no_fusion_weights() -> None:
    model = build_model("baseline", num_classes=3, **TINY).eval()
    with torch.no_grad():
        outs, weights = model(torch.zeros(1, 3, 64, 64), return_fusion_weights=True)
    assert weights is None and len(outs) == 3


@pytest.mark.parametrize("level", [0, 1, 2])
def test_asff_level_output_is_the_weighted_sum(level: int) -> None:
    torch.manual_seed(level)
    in_ch, out_ch = (64, 32, 32), (128, 64, 32)
    m = ASFFLevel(level, in_ch, out_ch[level], compress_c=8).eval()
    for bn in m.modules():  # non-trivial BN statistics so that the resize paths matter
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    m.expand = nn.Identity()
    x0, x1, x2 = torch.randn(2, 64, 4, 4), torch.randn(2, 32, 8, 8), torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        fused, w = m(x0, x1, x2)
        r = m.resize(x0, x1, x2)
        logits = m.weight_levels(
            torch.cat([m.weight_level_0(r[0]), m.weight_level_1(r[1]), m.weight_level_2(r[2])], 1)
        )
    g = (4, 8, 16)[level]
    inter = in_ch[level]
    assert all(tuple(t.shape) == (2, inter, g, g) for t in r)
    torch.testing.assert_close(w, F.softmax(logits, dim=1))
    expected = r[0] * w[:, 0:1] + r[1] * w[:, 1:2] + r[2] * w[:, 2:3]
    torch.testing.assert_close(fused, expected)
    assert tuple(fused.shape) == (2, inter, g, g)
    # The level's own input passes through resize unchanged.
    torch.testing.assert_close(r[level], (x0, x1, x2)[level])


def test_asff_level_resizes_as_the_official_module() -> None:
    # level 2 takes the stride-16 map by nearest x2 without a conv when channels match
    m = ASFFLevel(2, (64, 32, 32), 32).eval()
    assert not hasattr(m, "compress_level_1")
    x1 = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        _, r1, _ = m.resize(torch.randn(1, 64, 4, 4), x1, torch.randn(1, 32, 16, 16))
    torch.testing.assert_close(r1, x1.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert hasattr(ASFFLevel(2, (64, 48, 32), 32), "compress_level_1")


def test_asff_star_halves_the_compression() -> None:
    plain = build_model("asff", num_classes=3, **TINY)
    star = build_model("asff-star", num_classes=3, **TINY)
    assert plain.fusion.levels[0].weight_levels.in_channels == 3 * 16
    assert star.fusion.levels[0].weight_levels.in_channels == 3 * 8
    assert star.heads[0].feature_adaption.rfb is not None
    assert plain.heads[0].feature_adaption.rfb is None


# ---------------------------------------------------------------------------------------------
# Width and depth multipliers
# ---------------------------------------------------------------------------------------------


def test_width_multiplier_scales_channels() -> None:
    full = build_model("baseline", num_classes=80)
    half = build_model("baseline", num_classes=80, width=0.5)
    assert full.backbone.out_channels == (256, 512, 1024)
    assert half.backbone.out_channels == (128, 256, 512)
    assert full.neck.out_channels == (512, 256, 256)
    assert half.neck.out_channels == (256, 128, 128)
    assert [h.conv.in_channels for h in half.heads] == [512, 256, 128]
    tiny = build_model("baseline", num_classes=80, width=0.125)
    assert tiny.backbone.out_channels == (32, 64, 128)
    assert n_params(half) < n_params(full) / 3


def test_depth_multiplier_scales_blocks() -> None:
    def blocks(model: nn.Module) -> list[int]:
        return [len(stage[1].module_list) for stage in model.backbone.stages]

    assert blocks(build_model("baseline", num_classes=80)) == [1, 2, 8, 8, 4]
    assert blocks(build_model("baseline", num_classes=80, width=0.125, depth=0.34)) == [
        1,
        1,
        3,
        3,
        1,
    ]
    assert blocks(build_model("baseline", num_classes=80, width=0.125, depth=0.5)) == [
        1,
        1,
        4,
        4,
        2,
    ]


# ---------------------------------------------------------------------------------------------
# build_model and register_variant
# ---------------------------------------------------------------------------------------------


def test_build_model_rejects_unknown_variant() -> None:
    with pytest.raises(KeyError) as info:
        build_model("yolov4")
    msg = str(info.value)
    assert "yolov4" in msg
    assert all(name in msg for name in available())


def test_build_model_rejects_unknown_override() -> None:
    with pytest.raises(KeyError) as info:
        build_model("baseline", widht=0.5)
    msg = str(info.value)
    assert "widht" in msg
    for key in ("width", "depth", "fusion", "anchors", "head"):
        assert key in msg


def test_build_model_overrides_replace_the_spec() -> None:
    model = build_model("baseline", num_classes=5, fusion="asff", **TINY)
    assert type(model.fusion).__name__ == "ASFF"
    assert model.spec["fusion"] == "asff" and model.spec["name"] == "baseline"
    with pytest.raises(KeyError, match="unknown fusion 'nope'"):
        build_model("baseline", fusion="nope", **TINY)


class _SumFusion(nn.Module):
    """A toy fusion: each level plus the upsampled coarser level, then a 3x3 to head width."""

    def __init__(self, in_channels, out_channels, **_):  # noqa: ANN001
        super().__init__()
        self.convs = nn.ModuleList(
            conv_bn_act(i, o, 3) for i, o in zip(in_channels, out_channels, strict=True)
        )

    def forward(self, feats, return_weights=False):  # noqa: ANN001, ANN201
        out = [self.convs[0](feats[0])]
        for lvl in (1, 2):
            prev = F.interpolate(feats[lvl - 1][:, : feats[lvl].shape[1]], scale_factor=2)
            out.append(self.convs[lvl](feats[lvl] + prev))
        return (out, None) if return_weights else out


def test_register_variant_with_a_new_fusion_builds() -> None:
    fusion_name, variant = "test-sum-fusion", "test-sum"
    FUSIONS.register(fusion_name)(_SumFusion)
    try:
        register_variant(variant, fusion=fusion_name, head="yolov3", spp=False)
        assert variant in available()
        model = build_model(variant, num_classes=4, **TINY).eval()
        assert isinstance(model.fusion, _SumFusion)
        assert model.spec["fusion"] == fusion_name
        with torch.no_grad():
            outs = model(torch.zeros(1, 3, 96, 96))
        assert [tuple(o.raw.shape) for o in outs] == [
            (1, 3, 3, 3, 9),
            (1, 3, 6, 6, 9),
            (1, 3, 12, 12, 9),
        ]
        with pytest.raises(KeyError, match="already registered"):
            register_variant(variant, fusion="none")
    finally:
        VARIANTS.pop(variant, None)
        FUSIONS._items.pop(fusion_name, None)
    assert variant not in available()


def test_register_variant_rejects_unknown_spec_keys() -> None:
    with pytest.raises(KeyError, match="fuson"):
        register_variant("test-bad", fuson="asff")
    assert "test-bad" not in VARIANTS


# ---------------------------------------------------------------------------------------------
# Anchors and decode
# ---------------------------------------------------------------------------------------------


def test_yolov3_anchors_are_yolov3s_and_the_official_sets_are_the_official_codes() -> None:
    # yolov3.cfg (and DeNA's PyTorch YOLOv3, which the official code descends from)
    assert YOLOV3_ANCHORS == (
        (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119),
        (116, 90), (156, 198), (373, 326),
    )  # fmt: skip
    # GOATmessi8/ASFF models/yolov3_head.py: the default set, and the one of its `sep` heads
    assert ANCHOR_SETS["official"] == (
        (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (42, 119),
        (116, 90), (156, 198), (121, 240),
    )  # fmt: skip
    assert ANCHOR_SETS["official-sep"] == (*ANCHOR_SETS["official"][:8], (373, 326))
    assert OFFICIAL_ANCHORS == ANCHOR_SETS["official"]
    default = build_model("yolov3-original", num_classes=3, **TINY)
    official = build_model("yolov3-original", num_classes=3, anchors="official", **TINY)
    assert default.anchors[5] == (59.0, 119.0) and default.anchors[-1] == (373.0, 326.0)
    assert official.anchors[5] == (42.0, 119.0) and official.anchors[-1] == (121.0, 240.0)
    # level 0 (stride 32) holds anchors 6, 7, 8; level 1 holds 3, 4, 5
    assert official.heads[0].anchors.tolist() == [[116, 90], [156, 198], [121, 240]]
    assert default.heads[1].anchors.tolist() == [[30, 61], [62, 45], [59, 119]]
    ga = build_model("baseline", num_classes=3, anchors="official", **TINY)
    assert ga.heads[0].priors.tolist() == [[116, 90], [156, 198], [121, 240], [128, 128]]
    with pytest.raises(ValueError, match="unknown anchor set"):
        build_model("baseline", anchors="yolov9", **TINY)


def test_decode_scales_the_anchors_of_yolov3_head() -> None:
    model = build_model("yolov3-original", num_classes=2, **TINY).eval()
    with torch.no_grad():
        outs = model(torch.zeros(1, 3, 64, 64))
    zero = [o._replace(raw=torch.zeros_like(o.raw)) for o in outs]
    dec = model.decode(zero)[0]  # (N, 7); level 0: 3 slots x 2 x 2 cells first
    assert dec.shape == (3 * 4 + 3 * 16 + 3 * 64, 7)
    lvl0 = dec[:12].view(3, 2, 2, 7)
    for slot, (w, h) in enumerate(YOLOV3_ANCHORS[6:9]):
        assert (lvl0[slot, ..., 2] == w).all() and (lvl0[slot, ..., 3] == h).all()
    # centres: (sigmoid(0) + x) * stride
    assert lvl0[0, 0, 1, 0] == pytest.approx(48.0) and lvl0[0, 1, 0, 1] == pytest.approx(48.0)
    assert lvl0[1, 1, 1, 0] == pytest.approx(48.0) and lvl0[1, 1, 1, 1] == pytest.approx(48.0)
    assert lvl0[2, 0, 0, 0] == pytest.approx(16.0) and lvl0[2, 0, 0, 1] == pytest.approx(16.0)
    torch.testing.assert_close(dec[:, 4:], torch.full((dec.shape[0], 3), 0.5))
    lvl2 = dec[12 + 48 :].view(3, 8, 8, 7)
    assert lvl2[2, 0, 0, 2] == 33 and lvl2[2, 0, 0, 3] == 23
    assert lvl2[0, 7, 3, 0] == pytest.approx(3.5 * 8) and lvl2[0, 7, 3, 1] == pytest.approx(7.5 * 8)
    # tw = log 2 doubles the width
    raw = zero[0].raw.clone()
    raw[..., 2] = math.log(2.0)
    dec2 = model.decode([zero[0]._replace(raw=raw), *zero[1:]])[0]
    assert (dec2[:4, 2] == 2 * 116).all() and (dec2[:4, 3] == 90).all()


def test_decode_uses_the_guided_anchor_shapes() -> None:
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=2, **TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
    zero = [o._replace(raw=torch.zeros_like(o.raw)) for o in outs]
    dec = model.decode(zero)[0]
    wh = torch.cat([o.anchor_wh.reshape(-1, 2) for o in outs])
    torch.testing.assert_close(dec[:, 2:4], wh)
    # anchor_wh = exp(guide_wh(feature)) * prior, per slot (the anchor-free prior 4 * stride)
    with torch.no_grad():
        feats = model.fusion(model.neck(*model.backbone(x)))
    for head, feat, out in zip(model.heads, feats, outs, strict=True):
        g = feat.shape[-1]
        scale = head.guide_wh(feat).exp().view(1, 4, 2, g, g).permute(0, 1, 3, 4, 2)
        torch.testing.assert_close(out.anchor_wh, scale * head.priors.view(1, 4, 1, 1, 2))
        assert head.priors[3].tolist() == [4.0 * head.stride] * 2


# ---------------------------------------------------------------------------------------------
# DropBlock
# ---------------------------------------------------------------------------------------------


def test_scheduled_dropblock_is_identity_until_reset_and_in_eval() -> None:
    x = torch.ones(2, 8, 32, 32)
    db = ScheduledDropBlock().train()
    assert db.keep_prob == 1.0
    assert torch.equal(db(x), x)
    db.reset(3, 1.0)
    assert torch.equal(db(x), x)
    db.reset(3, 0.9)
    db.eval()
    assert torch.equal(db(x), x)


def test_scheduled_dropblock_drops_blocks_in_training() -> None:
    x = torch.ones(2, 8, 32, 32)
    db = ScheduledDropBlock().train()
    db.reset(3, 0.9)
    assert (db.block_size, db.keep_prob) == (3, 0.9)
    assert "block_size=3" in repr(db) and "keep_prob=0.9" in repr(db)
    torch.manual_seed(0)
    y = db(x)
    dropped = (y == 0).float().mean().item()
    assert 0.02 < dropped < 0.3  # about 1 - keep_prob
    kept = y[y != 0]
    assert torch.allclose(kept, kept[0].expand_as(kept)) and kept[0] > 1  # rescaled
    assert y.sum().item() == pytest.approx(x.numel(), rel=1e-4)  # expectation preserved
    torch.manual_seed(0)
    assert torch.equal(db(x), y)  # seeded
    db.reset(1, 1.0)
    assert torch.equal(db(x), x)


def test_detector_exposes_the_neck_dropblocks() -> None:
    model = build_model("asff-star", num_classes=2, **TINY).train()
    layers = model.dropblocks()
    assert len(layers) == 3 and all(isinstance(d, ScheduledDropBlock) for d in layers)
    assert all(a is b for a, b in zip(layers, model.neck.dropblocks, strict=True))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def neck_out() -> list[torch.Tensor]:
        with torch.no_grad():
            return model.neck(*model.backbone(x))

    plain = neck_out()
    assert all(torch.equal(a, b) for a, b in zip(plain, neck_out(), strict=True))
    for layer, size in zip(layers, (1, 3, 5), strict=True):
        layer.reset(size, 0.5)
    torch.manual_seed(0)
    dropped = neck_out()
    assert all(not torch.equal(a, b) for a, b in zip(plain, dropped, strict=True))
    model.eval()
    for layer in layers:
        layer.reset(1, 1.0)
    ref = neck_out()
    for layer, size in zip(layers, (1, 3, 5), strict=True):
        layer.reset(size, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(ref, neck_out(), strict=True))


# ---------------------------------------------------------------------------------------------
# A weights file that does not fit its model spec: the message names the tensor at fault.
@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            "shape",
            r"1 tensor\(s\) of another shape, e\.g\. {key}: \(3, 3\) in the file, "
            r"\(.*\) in the model",
        ),
        ("missing", r"1 tensor\(s\) missing from the file, e\.g\. {key}"),
        ("extra", r"1 tensor\(s\) the model does not have, e\.g\. extra\.weight"),
    ],
)
def test_weights_that_do_not_fit_name_the_tensor(tmp_path, damage: str, expected: str) -> None:
    from study.errors import CheckpointError
    from study.models.weights import load_weights

    model = build_model("yolov3-original", num_classes=3, **TINY)
    state = model.state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    if damage == "shape":
        state[key] = torch.zeros(3, 3)
    elif damage == "missing":
        del state[key]
    else:
        state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pt"
    torch.save({"model": state, "spec": model.spec}, path)
    expected = expected.format(key=key.replace(".", "[.]"))
    with pytest.raises(
        CheckpointError, match=rf"w\.pt: the weights do not fit their model spec \({expected}"
    ):
        load_weights(path, torch.device("cpu"))
