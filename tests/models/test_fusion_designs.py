"""The fusion designs of issue 19 (afpn, pan, bifpn, gd) and the parameter-matched control
(none_matched): shapes at the model's channels, which input levels reach which output levels,
what ``return_weights`` gives, each module's equation, and the control's parameter count."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from study.analysis.gradients import weights_detached
from study.config import load_experiment
from study.models import build_model
from study.models.fusions import FUSIONS, build_fusion
from study.models.fusions.afpn import AFPN, weighted_sum
from study.models.fusions.gd import resize

REPO = Path(__file__).resolve().parents[2]
DESIGNS = ["afpn", "pan", "bifpn", "gd", "none_matched"]
# Which input levels reach which output level: CONNECTED[name][l] = the inputs i with
# d(output l)/d(input i) != 0 (every other pair must be exactly zero).
ALL = {0, 1, 2}
CONNECTED = {
    "afpn": [ALL, ALL, ALL],
    "bifpn": [ALL, ALL, ALL],
    "gd": [ALL, ALL, ALL],
    # bottom-up only (PANet's top-down half is the neck): N5 <- 0,1,2; N4 <- 1,2; N3 <- 2
    "pan": [{0, 1, 2}, {1, 2}, {2}],
    "none_matched": [{0}, {1}, {2}],
}


@functools.cache
def channels(width: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The fusion's (in_channels, out_channels) in the fusion study's detector at ``width``."""
    model = build_model("yolov3-spp", num_classes=3, width=width, depth=0.34)
    return tuple(model.neck.out_channels), tuple(h.conv.in_channels for h in model.heads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _design(name: str, width: float = 0.25, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_fusion(name, *channels(width)).eval()


def _feats(width: float = 0.25, batch: int = 2, grid: int = 4) -> list[Tensor]:
    """Random neck maps [P5, P4, P3] (stride 32, 16, 8) for a (32 * grid)-pixel image."""
    gen = torch.Generator().manual_seed(1)
    in_ch, _ = channels(width)
    return [
        torch.randn(batch, c, grid * 2**lvl, grid * 2**lvl, generator=gen)
        for lvl, c in enumerate(in_ch)
    ]


def _without_expand(name: str) -> tuple[nn.Module, list[Tensor], list[Tensor]]:
    """The design with BN statistics set and its expand convs removed (outputs are the fused
    maps themselves), the neck maps [P5, P4, P3] and its outputs on them."""
    m = _design(name)
    _bn_statistics(m)
    m.expand = nn.ModuleList(nn.Identity() for _ in range(3))
    feats = _feats()
    with torch.no_grad():
        return m, feats, m(feats)


def _bn_statistics(module: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that no path is an accidental identity."""
    gen = torch.Generator().manual_seed(2)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(torch.rand(bn.num_features, generator=gen) * 0.4 - 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)


def test_the_designs_are_registered_with_an_experiment_file_each() -> None:
    """Each design has its module and its experiment file (experiments/designs, the extended
    comparison's group), which resolves to exactly asff's config but for the fusion: the same
    detector, profile and protocol as Table 3."""
    asff = load_experiment(REPO / "experiments" / "fusion" / "asff.yaml", params_path=None)
    for name in DESIGNS:
        assert name in FUSIONS
        assert (REPO / "study" / "models" / "fusions" / f"{name}.py").is_file()
        path = REPO / "experiments" / "designs" / f"{name}.yaml"
        assert yaml.safe_load(path.read_text())["model"] == {"fusion": name}
        cfg = load_experiment(path, params_path=None)
        assert cfg["model"]["fusion"] == name
        for key in set(asff) | set(cfg):
            if key in ("name", "description"):
                continue
            mine, theirs = cfg.get(key), asff.get(key)
            if key == "model":
                mine, theirs = (
                    {k: v for k, v in m.items() if k != "fusion"} for m in (mine, theirs)
                )
            assert mine == theirs, (name, key)


# ---------------------------------------------------------------------------------------------
# Shapes, connectivity, weights: every design
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0.125, 0.25])
@pytest.mark.parametrize("name", DESIGNS)
def test_outputs_keep_each_levels_size_at_the_heads_channels(name: str, width: float) -> None:
    _, out_ch = channels(width)
    feats = _feats(width)
    with torch.no_grad():
        out = _design(name, width)(feats)
    assert len(out) == 3
    for o, f, c in zip(out, feats, out_ch, strict=True):
        assert tuple(o.shape) == (f.shape[0], c, *f.shape[2:])
        assert torch.isfinite(o).all()


@pytest.mark.parametrize("name", DESIGNS)
def test_which_input_levels_reach_which_output_level(name: str) -> None:
    """d(output l)/d(input i) is non-zero exactly where the design connects i to l: a design
    that loses a level (an unused branch, a missing edge) fails here, as does a control that
    lets information cross levels."""
    m = _design(name)
    _bn_statistics(m)
    feats = [f.requires_grad_() for f in _feats()]
    out = m(feats)
    gen = torch.Generator().manual_seed(3)
    for lvl, o in enumerate(out):
        probe = (o * torch.randn(o.shape, generator=gen)).sum()  # no cancellation by symmetry
        grads = torch.autograd.grad(probe, feats, retain_graph=True, allow_unused=True)
        for i, g in enumerate(grads):
            norm = 0.0 if g is None else float(g.norm())
            if i in CONNECTED[name][lvl]:
                assert norm > 1e-6, f"{name}: input {i} does not reach output {lvl}"
            else:
                assert norm == 0.0, f"{name}: input {i} reaches output {lvl}"


@pytest.mark.parametrize("name", ["pan", "bifpn", "gd", "none_matched"])
def test_designs_without_a_share_of_levels_return_no_weights(name: str) -> None:
    with torch.no_grad():
        out, weights = _design(name)(_feats(), return_weights=True)
    assert weights is None and len(out) == 3


def test_afpn_returns_its_stage2_softmax_weights_per_location() -> None:
    m = _design("afpn")
    feats = _feats(batch=2, grid=4)
    with torch.no_grad():
        out, weights = m(feats, return_weights=True)
    assert len(weights) == 3
    for w, o in zip(weights, out, strict=True):
        assert tuple(w.shape) == (2, 3, *o.shape[2:])
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]), atol=1e-5, rtol=0)
        assert w.std() > 1e-4  # per location, not a constant 1/3


# ---------------------------------------------------------------------------------------------
# Each design's equation
# ---------------------------------------------------------------------------------------------


def test_afpn_is_stage1_on_levels_1_2_then_weighted_sums_of_all_three() -> None:
    m = _design("afpn")
    _bn_statistics(m)
    x0, x1, x2 = _feats()
    with torch.no_grad():
        out, weights = m([x0, x1, x2], return_weights=True)
        s1, s2 = m.adjacent[0](x1, x2), m.adjacent[1](x1, x2)
        for lvl, level in enumerate(m.levels):
            maps = level.resize(x0, s1, s2)
            torch.testing.assert_close(weights[lvl], level.weights(list(maps), False))
            torch.testing.assert_close(
                out[lvl], level.expand(weighted_sum(list(maps), weights[lvl]))
            )
        # stage 1 at level 2: the two-way weights sum to one, the fused map is their average
        stage1 = m.adjacent[1]
        maps = [F.interpolate(x1, scale_factor=2, mode="nearest"), x2]  # channels already match
        w = stage1.weights(maps, False)
        assert tuple(w.shape) == (2, 2, *x2.shape[2:])
        torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]), atol=1e-5, rtol=0)
        torch.testing.assert_close(s2, stage1.fuse(maps[0] * w[:, :1] + maps[1] * w[:, 1:]))


def test_afpn_detached_weights_cover_both_stages_as_study_analyze_sets_them() -> None:
    """``weights_detached`` (what ``study analyze`` uses) reaches both stages' modules (each a
    ``LevelResize``): with it no weight branch of either stage gets a gradient; outputs
    unchanged."""
    m = _design("afpn")
    assert isinstance(m, AFPN)
    weight_params = [p for n, p in m.named_parameters() if ".weights." in n]
    # 3 stage-2 branches over 3 inputs, 2 stage-1 branches over 2: per input a compress conv and
    # BN (3 tensors), per branch the logits conv (2)
    assert len(weight_params) == 3 * (3 * 3 + 2) + 2 * (2 * 3 + 2)
    feats = _feats()

    def run(detach: bool) -> tuple[list[Tensor], list[Tensor | None]]:
        with weights_detached(m, detach):
            out = m(feats)
            loss = sum(o.square().mean() for o in out)
            grads = torch.autograd.grad(loss, weight_params, allow_unused=True)
        return out, list(grads)

    (out_a, grads_a), (out_b, grads_b) = run(False), run(True)
    for a, b in zip(out_a, out_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(g is not None and float(g.abs().max()) > 0 for g in grads_a)
    assert all(g is None or float(g.abs().max()) == 0 for g in grads_b)
    assert not any(lvl.detach_weights for lvl in [*m.levels, *m.adjacent])  # restored


def test_pan_is_the_bottom_up_path_with_plain_sums() -> None:
    m, (p5, p4, p3), (n5, n4, n3) = _without_expand("pan")
    with torch.no_grad():
        up4, up5 = m.bottom_up[1], m.bottom_up[0]
        expected_n4 = up4.conv(up4.down(p3) + p4)
        expected_n5 = up5.conv(up5.down(expected_n4) + p5)
    torch.testing.assert_close(n3, p3, rtol=0, atol=0)
    torch.testing.assert_close(n4, expected_n4)
    torch.testing.assert_close(n5, expected_n5)
    assert up4.down.conv.stride == (2, 2) and up5.down.conv.stride == (2, 2)


def test_bifpn_nodes_are_fast_normalised_fusions() -> None:
    m = _design("bifpn")
    _bn_statistics(m)
    node = m.p4_out  # the middle level's bottom-up node: three inputs (the extra same-level edge)
    assert [n.edge_weights.numel() for n in (m.p4_td, m.p3_out, m.p4_out, m.p5_out)] == [2, 2, 3, 2]
    torch.testing.assert_close(node.normalised_weights(), torch.full((3,), 1 / (3 + node.eps)))
    a, b, c = (torch.randn(2, node.conv.conv.in_channels, 8, 8) for _ in range(3))
    with torch.no_grad():
        node.edge_weights.copy_(torch.tensor([2.0, -1.0, 1.0]))  # relu: 2, 0, 1
        expected = node.conv((2.0 * a + 1.0 * c) / (3.0 + node.eps))
        torch.testing.assert_close(node(a, b, c), expected)


def test_bifpn_runs_top_down_then_bottom_up() -> None:
    m, (p5, p4, p3), (out5, out4, out3) = _without_expand("bifpn")
    with torch.no_grad():
        td4 = m.p4_td(p4, m.up_5_to_4(p5))
        exp3 = m.p3_out(p3, m.up_4_to_3(td4))
        exp4 = m.p4_out(p4, td4, m.down_3_to_4(exp3))
        exp5 = m.p5_out(p5, m.down_4_to_5(exp4))
    for got, expected in zip((out5, out4, out3), (exp5, exp4, exp3), strict=True):
        torch.testing.assert_close(got, expected)


def test_gd_gathers_at_stride_16_and_injects_through_a_sigmoid_gate() -> None:
    m = _design("gd")
    _bn_statistics(m)
    feats = _feats(grid=4)
    in_ch, _ = channels(0.25)
    with torch.no_grad():
        gathered = m.gather(feats)
        assert tuple(gathered.shape) == (2, sum(in_ch), 8, 8)  # the middle level's grid
        torch.testing.assert_close(gathered[:, in_ch[0] : in_ch[0] + in_ch[1]], feats[1])
        pooled = gathered[:, in_ch[0] + in_ch[1] :]  # stride 8 -> 16 by 2x2 average pooling
        torch.testing.assert_close(pooled, F.avg_pool2d(feats[2], 2))
        g = m.fuse(gathered)
        out = m(feats)
        for lvl, (inject, x) in enumerate(zip(m.inject, feats, strict=True)):
            size = tuple(x.shape[2:])
            gate = resize(torch.sigmoid(inject.global_act(g)), size)
            assert 0 < float(gate.min()) and float(gate.max()) < 1
            fused = inject.local_embed(x) * gate + resize(inject.global_embed(g), size)
            torch.testing.assert_close(out[lvl], m.expand[lvl](fused))


# ---------------------------------------------------------------------------------------------
# The parameter-matched control
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0.125, 0.25, 1.0])
def test_none_matched_has_asffs_parameter_count(width: float) -> None:
    in_ch, out_ch = channels(width)
    asff = n_params(build_fusion("asff", in_ch, out_ch))
    matched = n_params(build_fusion("none_matched", in_ch, out_ch))
    none = n_params(build_fusion("none", in_ch, out_ch))
    assert abs(matched / asff - 1) <= 0.05, (width, matched, asff)
    assert none < 0.7 * asff  # so the match is not trivially true
