"""``sum``: resize every level to the output level and add them (the paper's "element-wise sum").

Section 3.3 of the paper: with this fusion the gradient at a location is the sum of all
levels' gradients, so a level where the location is background pulls against the level where it
is an object. Same resizing and expand conv as ASFF (``resize.py``); only the weights are gone.
"""

from __future__ import annotations

from torch import Tensor

from study.models.fusions import FUSIONS
from study.models.fusions.resize import LevelResize, PerLevelFusion, expand_conv


class SumLevel(LevelResize):
    def __init__(self, level: int, in_channels: tuple[int, int, int], out_ch: int) -> None:
        super().__init__(level, in_channels)
        self.expand = expand_conv(self, out_ch)

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, None]:
        r0, r1, r2 = self.resize(x0, x1, x2)
        return self.expand(r0 + r1 + r2), None


@FUSIONS.register("sum")
def sum_fusion(
    in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], *, rfb: bool = False
) -> PerLevelFusion:
    return PerLevelFusion([SumLevel(lvl, in_channels, out_channels[lvl]) for lvl in range(3)])
