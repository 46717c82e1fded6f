"""ASFF: adaptively spatial feature fusion (paper section 3.2), as the official module does it.

For output level l, the other two levels are resized to level l's resolution and channels
(``resize.py``), each resized map is compressed to a few channels, a 1x1 conv turns their
concatenation into three logits per location, a softmax over levels gives alpha, beta, gamma
(summing to one at every location), and the fused map is the weighted sum

    y^l_ij = alpha^l_ij * x^{0->l}_ij + beta^l_ij * x^{1->l}_ij + gamma^l_ij * x^{2->l}_ij.

Departures of the official module from the paper's text, kept here to match its weights:
- the paper resizes up with "1x1 conv + interpolation"; the official level 2 takes level 1 by
  nearest x2 *without* a 1x1 conv, because their channels already match (256);
- a 3x3 "expand" conv follows the weighted sum (the paper does not mention it);
- the compression to 16 channels is conv+BN+LeakyReLU (8 channels in ASFF*, with RFB);
- its inputs are the outputs of YOLOv3's own top-down path: ASFF fuses on top of YOLOv3's
  fusion, not instead of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS
from study.models.fusions.resize import LevelResize, PerLevelFusion, expand_conv


class ASFFLevel(LevelResize):
    """Fuses three levels (ordered stride 32, 16, 8) into output ``level``."""

    def __init__(
        self, level: int, in_channels: tuple[int, int, int], out_ch: int, compress_c: int = 16
    ) -> None:
        super().__init__(level, in_channels)
        self.expand = expand_conv(self, out_ch)
        self.weight_level_0 = conv_bn_act(self.channels, compress_c, 1)
        self.weight_level_1 = conv_bn_act(self.channels, compress_c, 1)
        self.weight_level_2 = conv_bn_act(self.channels, compress_c, 1)
        self.weight_levels = torch.nn.Conv2d(3 * compress_c, 3, 1)

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        r0, r1, r2 = self.resize(x0, x1, x2)
        logits = self.weight_levels(
            torch.cat(
                [self.weight_level_0(r0), self.weight_level_1(r1), self.weight_level_2(r2)], 1
            )
        )
        w = F.softmax(logits, dim=1)  # (B, 3, H, W): alpha, beta, gamma
        if self.detach_weights:
            w = w.detach()
        fused = r0 * w[:, 0:1] + r1 * w[:, 1:2] + r2 * w[:, 2:3]
        return self.expand(fused), w


class ASFF(PerLevelFusion):
    """One ASFFLevel per output level; can return the weight maps for figures and analysis."""

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        out_channels: tuple[int, int, int],
        compress_c: int = 16,
    ) -> None:
        super().__init__(
            [ASFFLevel(lvl, in_channels, out_channels[lvl], compress_c) for lvl in range(3)]
        )


@FUSIONS.register("asff")
def asff(
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    *,
    rfb: bool = False,
    compress_c: int | None = None,
) -> ASFF:
    """``compress_c``: channels of each level's weight branch (default: 16, or 8 with RFB, as
    the official code halves it for ASFF* to save memory)."""
    return ASFF(in_channels, out_channels, compress_c=compress_c or (8 if rfb else 16))
