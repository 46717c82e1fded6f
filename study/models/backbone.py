"""Darknet-53 (YOLOv3's backbone) with width and depth multipliers."""

from __future__ import annotations

from torch import Tensor, nn

from study.models.blocks import ResBlocks, conv_bn_act, scaled
from study.registry import Registry

BACKBONES: Registry = Registry("backbone")

# (output channels, residual units) of the five stride-2 stages; strides 2, 4, 8, 16, 32.
DARKNET53_STAGES = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))


class Darknet53(nn.Module):
    """Returns the stride-8, 16 and 32 feature maps (C3, C4, C5)."""

    def __init__(self, width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, scaled(32, width), 3)
        stages = []
        in_ch = scaled(32, width)
        for ch, n in DARKNET53_STAGES:
            out_ch = scaled(ch, width)
            units = max(1, round(n * depth))
            stages.append(nn.Sequential(conv_bn_act(in_ch, out_ch, 3, 2), ResBlocks(out_ch, units)))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(scaled(c, width) for c, _ in DARKNET53_STAGES[2:])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2], feats[3], feats[4]


@BACKBONES.register("darknet53")
def darknet53(width: float = 1.0, depth: float = 1.0) -> Darknet53:
    return Darknet53(width, depth)
