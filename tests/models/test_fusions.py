"""The fusion registry (study/models/fusions): every strategy builds, runs and trains on every
head; each combines the resized levels as its module says; its own arguments are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from study.engine.loss import YOLOLoss
from study.errors import ConfigError
from study.models import build_model
from study.models.fusions import FUSIONS, build_fusion, check_fusion_args, fusion_arguments
from study.models.fusions.resize import LevelResize
from study.models.head import HEADS

TINY = {"width": 0.125, "depth": 0.34}
PACKAGE = Path(__file__).resolve().parents[2] / "study" / "models" / "fusions"
STRATEGIES = FUSIONS.names()
WITH_WEIGHTS = {"asff", "scalar", "afpn"}  # strategies that return per-level weight maps
# strategies built from per-level LevelResize modules (ASFF's resizing); the others have their
# own paths between levels (pan, bifpn, gd) or none (none, none_matched)
RESIZING = ("sum", "concat", "scalar", "asff", "afpn")


def _targets(n_images: int) -> list[dict]:
    """One small, one medium and one large box per image (in 64 x 64 input pixels)."""
    boxes = torch.tensor([[4.0, 4.0, 12.0, 12.0], [20.0, 20.0, 44.0, 40.0], [2.0, 2.0, 62.0, 60.0]])
    return [
        {"boxes": boxes, "labels": torch.tensor([0, 1, 2]), "weights": torch.ones(3)}
        for _ in range(n_images)
    ]


def test_every_module_of_the_package_registers_its_strategy() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "resize"}
    assert modules <= set(STRATEGIES)
    assert {"none", "sum", "concat", "scalar", "asff"} <= set(STRATEGIES)


@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("fusion", STRATEGIES)
def test_every_fusion_trains_a_step_on_every_head(fusion: str, head: str) -> None:
    torch.manual_seed(0)
    model = build_model("yolov3-spp", num_classes=3, fusion=fusion, head=head, **TINY)
    model.train()
    crit = YOLOLoss(model.anchors, model.anchor_masks, 3, iou_loss="iou")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = {k: v.detach().clone() for k, v in model.fusion.state_dict().items()}
    outputs, weights = model(torch.randn(2, 3, 64, 64), return_fusion_weights=True)
    losses = crit(outputs, _targets(2), 64)
    assert torch.isfinite(losses["total"]) and losses["total"] > 0
    opt.zero_grad()
    losses["total"].backward()
    fusion_params = list(model.fusion.named_parameters())
    for name, p in fusion_params:  # every parameter of the strategy is on the loss's path
        assert p.grad is not None, f"{fusion}: {name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{fusion}: {name} has a non-finite gradient"
    opt.step()
    after = model.fusion.state_dict()
    changed = [
        k for k, v in before.items() if v.dtype.is_floating_point and not torch.equal(v, after[k])
    ]
    assert changed or not fusion_params, f"{fusion}: one SGD step changed nothing"
    if fusion in WITH_WEIGHTS:
        assert weights is not None and len(weights) == 3
        for w, out in zip(weights, outputs, strict=True):
            assert tuple(w.shape) == (2, 3, *out.raw.shape[2:4])
            torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]), atol=1e-3, rtol=0)
    else:
        assert weights is None


def _levels(fusion: str, level: int, **args) -> nn.Module:
    torch.manual_seed(level)
    m = build_fusion(fusion, (64, 32, 32), (128, 64, 32), args=args).eval()
    lvl = m.levels[level]
    for bn in lvl.modules():  # non-trivial BN statistics so that the resize paths matter
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    lvl.expand = nn.Identity()  # compare the combination itself
    return lvl


FEATS = (torch.randn(2, 64, 4, 4), torch.randn(2, 32, 8, 8), torch.randn(2, 32, 16, 16))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_sum_adds_the_resized_levels(level: int) -> None:
    m = _levels("sum", level)
    with torch.no_grad():
        fused, weights = m(*FEATS)
        r = m.resize(*FEATS)
    torch.testing.assert_close(fused, r[0] + r[1] + r[2])
    assert weights is None


@pytest.mark.parametrize("level", [0, 1, 2])
def test_concat_mixes_the_concatenated_levels(level: int) -> None:
    m = _levels("concat", level)
    with torch.no_grad():
        fused, _ = m(*FEATS)
        r = m.resize(*FEATS)
        expected = m.mix(torch.cat(r, dim=1))
    torch.testing.assert_close(fused, expected)
    assert m.mix.conv.in_channels == 3 * m.channels


@pytest.mark.parametrize("level", [0, 1, 2])
def test_scalar_weights_are_normalised_relu_scalars(level: int) -> None:
    m = _levels("scalar", level)
    with torch.no_grad():
        m.level_weights.copy_(torch.tensor([2.0, -1.0, 1.0]))  # relu: 2, 0, 1
        fused, w = m(*FEATS)
        r = m.resize(*FEATS)
    expected_w = torch.tensor([2.0, 0.0, 1.0]) / (3.0 + m.eps)
    torch.testing.assert_close(w[0, :, 0, 0], expected_w)
    assert (w == w[:1, :, :1, :1]).all()  # the same at every location: one weight per level
    torch.testing.assert_close(fused, r[0] * expected_w[0] + r[2] * expected_w[2])


def test_every_strategy_resizes_like_asff() -> None:
    for fusion in RESIZING:
        for level in range(3):
            assert isinstance(_levels(fusion, level), LevelResize)


def test_fusion_arguments_are_the_builders_own_keywords() -> None:
    assert fusion_arguments("asff") == {"compress_c": None}
    assert fusion_arguments("scalar") == {"eps": 1e-4}
    assert fusion_arguments("sum") == {} == fusion_arguments("none")
    model = build_model("yolov3-spp", num_classes=3, fusion="asff", fusion_args={"compress_c": 4})
    assert model.fusion.levels[0].weight_levels.in_channels == 3 * 4
    assert model.spec["fusion_args"] == {"compress_c": 4}


def test_unknown_fusion_arguments_name_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"exp.yaml: fusion 'asff' has no argument\(s\) compres"):
        check_fusion_args("asff", {"compres": 4}, "exp.yaml")
    with pytest.raises(ConfigError, match="valid: compress_c"):
        build_fusion("asff", (64, 32, 32), (128, 64, 32), args={"compres": 4})
    with pytest.raises(ConfigError, match="valid: none"):
        check_fusion_args("sum", {"eps": 1.0})
    with pytest.raises(ConfigError, match="unknown fusion 'nope'"):
        check_fusion_args("nope", {})


def test_unknown_fusion_is_a_key_error_listing_the_registered() -> None:
    with pytest.raises(KeyError, match="unknown fusion 'nope'; registered: afpn, asff, bifpn"):
        build_model("yolov3-spp", fusion="nope", **TINY)


@pytest.mark.parametrize("fusion", STRATEGIES)
def test_detached_weights_change_only_the_gradient_through_the_weights(fusion: str) -> None:
    """``detach_weights`` (what ``study analyze`` sets) leaves every output unchanged; it
    changes the gradient into the features only where the weights depend on them (ASFF)."""
    torch.manual_seed(0)
    model = build_model("yolov3-spp", num_classes=3, fusion=fusion, **TINY).eval()
    feats = [f.detach().requires_grad_() for f in model.features(torch.randn(1, 3, 64, 64))]

    def run(detach: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for m in model.fusion.modules():
            if isinstance(m, LevelResize):
                m.detach_weights = detach
        fused, _ = model.fuse(feats)
        loss = sum((f**2).mean() for f in fused)
        return fused, list(torch.autograd.grad(loss, feats))

    (out_a, grad_a), (out_b, grad_b) = run(False), run(True)
    for a, b in zip(out_a, out_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    pairs = zip(grad_a, grad_b, strict=True)
    change = max(float((a - b).abs().max() / a.abs().max()) for a, b in pairs)
    if fusion in ("asff", "afpn"):  # the weights are a function of the features
        assert change > 1e-6
    else:
        assert change == 0.0, fusion


def test_the_detector_is_features_then_fuse_then_heads() -> None:
    torch.manual_seed(0)
    model = build_model("yolov3-spp", num_classes=3, fusion="asff", **TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    outputs, weights = model(x, return_fusion_weights=True)
    fused, weights_b = model.fuse(model.features(x))
    for a, b in zip(outputs, model.predict_levels(fused), strict=True):
        torch.testing.assert_close(a.raw, b.raw, rtol=0, atol=0)
    for a, b in zip(weights, weights_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
