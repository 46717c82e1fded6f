"""``concat``: resize every level to the output level, concatenate, and mix with a 1x1 conv.

The paper's "concatenation" alternative to ASFF. The 1x1 conv (conv+BN+LeakyReLU) maps the
3x concatenated channels back to the level's channels, so the expand conv and the head are the
same as ASFF's. Same resizing as ASFF (``resize.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS
from study.models.fusions.resize import LevelResize, PerLevelFusion, expand_conv


class ConcatLevel(LevelResize):
    def __init__(self, level: int, in_channels: tuple[int, int, int], out_ch: int) -> None:
        super().__init__(level, in_channels)
        self.mix = conv_bn_act(3 * self.channels, self.channels, 1)
        self.expand = expand_conv(self, out_ch)

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, None]:
        return self.expand(self.mix(torch.cat(self.resize(x0, x1, x2), dim=1))), None


@FUSIONS.register("concat")
def concat(
    in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], *, rfb: bool = False
) -> PerLevelFusion:
    return PerLevelFusion([ConcatLevel(lvl, in_channels, out_channels[lvl]) for lvl in range(3)])
