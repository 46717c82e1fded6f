"""YOLOv3's top-down neck, as the official ASFF code builds it (optionally with SPP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import SPP, ResBlocks, ScheduledDropBlock, conv_bn_act, scaled
from study.registry import Registry

NECKS: Registry = Registry("neck")


class YOLOv3Neck(nn.Module):
    """C3, C4, C5 -> [P5, P4, P3] (level 0 = stride 32 first, the official order).

    Output channels are 512, 256, 256 (times width): level 2 ends with the 3x3 conv that both
    official models apply before their stride-8 head or fusion. ``spp`` adds the official
    baseline's SPP block (and its 1x1 reduction); without it this is the original YOLOv3 neck.
    The three ``dropblocks`` sit where the official ASFF* schedule resets them.
    """

    def __init__(
        self, in_channels: tuple[int, int, int], width: float = 1.0, spp: bool = True
    ) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        w = lambda c: scaled(c, width)  # noqa: E731
        level0 = [ResBlocks(c5, 1, shortcut=False), conv_bn_act(c5, w(512), 1)]
        if spp:
            level0 += [SPP(), conv_bn_act(4 * w(512), w(512), 1)]
        level0 += [conv_bn_act(w(512), w(1024), 3)]
        self.level0 = nn.Sequential(*level0)
        self.level0_out = conv_bn_act(w(1024), w(512), 1)

        self.lateral1 = conv_bn_act(w(512), w(256), 1)
        self.level1 = nn.Sequential(
            conv_bn_act(w(256) + c4, w(256), 1), conv_bn_act(w(256), w(512), 3)
        )
        self.level1_out = nn.Sequential(
            ResBlocks(w(512), 1, shortcut=False), conv_bn_act(w(512), w(256), 1)
        )

        self.lateral2 = conv_bn_act(w(256), w(128), 1)
        self.level2 = nn.Sequential(
            conv_bn_act(w(128) + c3, w(128), 1), conv_bn_act(w(128), w(256), 3)
        )
        self.level2_out = nn.Sequential(
            ResBlocks(w(256), 1, shortcut=False),
            conv_bn_act(w(256), w(128), 1),
            conv_bn_act(w(128), w(256), 3),
        )
        self.dropblocks = nn.ModuleList(ScheduledDropBlock() for _ in range(3))
        self.out_channels = (w(512), w(256), w(256))

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor) -> list[Tensor]:
        p5 = self.level0_out(self.dropblocks[0](self.level0(c5)))
        x = F.interpolate(self.lateral1(p5), scale_factor=2, mode="nearest")
        p4 = self.level1_out(self.dropblocks[1](self.level1(torch.cat([x, c4], 1))))
        x = F.interpolate(self.lateral2(p4), scale_factor=2, mode="nearest")
        p3 = self.level2_out(self.dropblocks[2](self.level2(torch.cat([x, c3], 1))))
        return [p5, p4, p3]


@NECKS.register("yolov3")
def yolov3_neck(
    in_channels: tuple[int, int, int], width: float = 1.0, spp: bool = True
) -> YOLOv3Neck:
    return YOLOv3Neck(in_channels, width, spp)
