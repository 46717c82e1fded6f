"""``none_matched``: no cross-level fusion, with ``asff``'s parameter budget (a control).

Each head still reads only its own level of the YOLOv3 neck (as ``none``), but through extra
convs on that level, so that a gain of ``asff`` (or of any fusion of similar size) over ``none``
can be told apart from a gain of more parameters:

    y^l = widen(conv1x1(conv3x3(x^l)))        (widen: ``none``'s 3x3, identity on level 2)

What ``asff`` spends per level on resizing the two other levels (mostly 3x3 convs) and on its
weight branch (1x1 convs), this spends on the level's own map: a 3x3 and a 1x1 conv+BN+LeakyReLU
at the level's channels. The whole module is within about 1 % of ``asff``'s parameter count at
widths 0.25 and 1.0 (3 % below it at 0.125; tests/models/test_fusion_designs.py checks +-5 %).
No information crosses levels: output l depends on input l alone.
"""

from __future__ import annotations

from torch import nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS
from study.models.fusions.resize import OwnLevel, widen_conv


def own_level(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 and 1x1 at the level's channels, then ``none``'s widening conv (if the widths differ)."""
    return nn.Sequential(
        conv_bn_act(in_ch, in_ch, 3), conv_bn_act(in_ch, in_ch, 1), widen_conv(in_ch, out_ch)
    )


class MatchedNoFusion(OwnLevel):
    """One own-level conv stack per level; nothing crosses levels."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: tuple[int, ...]) -> None:
        super().__init__(own_level(i, o) for i, o in zip(in_channels, out_channels, strict=True))


@FUSIONS.register("none_matched")
def none_matched(
    in_channels: tuple[int, ...], out_channels: tuple[int, ...], *, rfb: bool = False
) -> MatchedNoFusion:
    return MatchedNoFusion(in_channels, out_channels)
