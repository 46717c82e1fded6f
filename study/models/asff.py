"""ASFF: adaptively spatial feature fusion (paper section 3.2), as the official module does it.

For output level l, the other two levels are resized to level l's resolution and channels, each
resized map is compressed to a few channels, a 1x1 conv turns their concatenation into three
logits per location, a softmax over levels gives alpha, beta, gamma (summing to one at every
location), and the fused map is the weighted sum

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
from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusion import FUSIONS


class ASFFLevel(nn.Module):
    """Fuses three levels (ordered stride 32, 16, 8) into output ``level``."""

    def __init__(
        self, level: int, in_channels: tuple[int, int, int], out_ch: int, compress_c: int = 16
    ) -> None:
        super().__init__()
        self.level = level
        inter = in_channels[level]  # every level is brought to this level's channels
        c0, c1, c2 = in_channels
        if level == 0:  # from stride 16: 3x3 s2; from stride 8: max-pool s2, then 3x3 s2
            self.stride_level_1 = conv_bn_act(c1, inter, 3, 2)
            self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        elif level == 1:  # from stride 32: 1x1 + nearest x2; from stride 8: 3x3 s2
            self.compress_level_0 = conv_bn_act(c0, inter, 1)
            self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        else:  # from stride 32: 1x1 + nearest x4; from 16: nearest x2 (1x1 if channels differ)
            self.compress_level_0 = conv_bn_act(c0, inter, 1)
            if c1 != inter:
                self.compress_level_1 = conv_bn_act(c1, inter, 1)
        self.expand = conv_bn_act(inter, out_ch, 3)
        self.weight_level_0 = conv_bn_act(inter, compress_c, 1)
        self.weight_level_1 = conv_bn_act(inter, compress_c, 1)
        self.weight_level_2 = conv_bn_act(inter, compress_c, 1)
        self.weight_levels = nn.Conv2d(3 * compress_c, 3, 1)

    def resize(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Bring the three levels to this level's resolution and channels."""
        if self.level == 0:
            return x0, self.stride_level_1(x1), self.stride_level_2(F.max_pool2d(x2, 3, 2, 1))
        if self.level == 1:
            up0 = F.interpolate(self.compress_level_0(x0), scale_factor=2, mode="nearest")
            return up0, x1, self.stride_level_2(x2)
        up0 = F.interpolate(self.compress_level_0(x0), scale_factor=4, mode="nearest")
        if hasattr(self, "compress_level_1"):
            x1 = self.compress_level_1(x1)
        return up0, F.interpolate(x1, scale_factor=2, mode="nearest"), x2

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        r0, r1, r2 = self.resize(x0, x1, x2)
        logits = self.weight_levels(
            torch.cat(
                [self.weight_level_0(r0), self.weight_level_1(r1), self.weight_level_2(r2)], 1
            )
        )
        w = F.softmax(logits, dim=1)  # (B, 3, H, W): alpha, beta, gamma
        fused = r0 * w[:, 0:1] + r1 * w[:, 1:2] + r2 * w[:, 2:3]
        return self.expand(fused), w


class ASFF(nn.Module):
    """One ASFFLevel per output level; can return the weight maps for figures and analysis."""

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        out_channels: tuple[int, int, int],
        compress_c: int = 16,
    ) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            ASFFLevel(lvl, in_channels, out_channels[lvl], compress_c) for lvl in range(3)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        outs, weights = zip(*(m(*feats) for m in self.levels), strict=True)
        return (list(outs), list(weights)) if return_weights else list(outs)


@FUSIONS.register("asff")
def asff(
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    rfb: bool = False,
    **_: object,
) -> ASFF:
    # The official code halves the compression width when RFB is on, to save memory.
    return ASFF(in_channels, out_channels, compress_c=8 if rfb else 16)
