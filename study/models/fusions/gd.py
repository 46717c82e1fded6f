"""``gd``: gather-and-distribute, Gold-YOLO's low-stage branch (Wang et al., "Gold-YOLO:
Efficient Object Detector via Gather-and-Distribute Mechanism", NeurIPS 2023).

Instead of passing information between neighbouring levels, every level is gathered into one
global feature, which is then injected back into each level:

- gather (Low-FAM): the three levels x^0, x^1, x^2 (stride 32, 16, 8) are aligned to the middle
  level's size (stride 16: bilinear up from stride 32, average pooling down from stride 8) and
  concatenated;
- fuse (Low-IFM): G = conv3x3(conv1x1(concat)), the global feature;
- distribute (inject), for each level l, with the global feature resized to level l's size:
      act^l   = resize(sigmoid(Conv_act^l(G)))
      embed^l = resize(Conv_embed^l(G))
      y^l     = expand(Conv_local^l(x^l) * act^l + embed^l)
  (Conv_*: 1x1 conv + BN; resize: bilinear up, average pooling down).

The gate is per channel and location, not a share of levels: no fusion weights are returned
(``return_weights`` gives None).

Simplifications: the inputs are the YOLOv3 neck's three levels (Gold-YOLO gathers four backbone
levels and injects into two); the Low-IFM's RepBlocks are one 1x1 and one 3x3 conv+BN+LeakyReLU,
and its split of the global feature into per-level parts is the per-level 1x1 convs of the
inject; the RepBlock after each injection is the expand conv of the other strategies; the
global feature has the middle level's channels; no lightweight adjacent-layer fusion (LAF).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS


def conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1 conv (no bias) -> BatchNorm, no activation (the inject module's convs)."""
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(in_ch, out_ch, 1, bias=False), batch_norm=nn.BatchNorm2d(out_ch))
    )


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """To ``size``: average pooling down, bilinear up (Gold-YOLO's alignment)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-1] > size[-1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Inject(nn.Module):
    """Conv_local(x) * resize(sigmoid(Conv_act(G))) + resize(Conv_embed(G))."""

    def __init__(self, local_ch: int, global_ch: int) -> None:
        super().__init__()
        self.local_embed = conv_bn(local_ch, local_ch)
        self.global_act = conv_bn(global_ch, local_ch)
        self.global_embed = conv_bn(global_ch, local_ch)

    def forward(self, local: Tensor, global_feat: Tensor) -> Tensor:
        size = tuple(local.shape[-2:])
        act = resize(torch.sigmoid(self.global_act(global_feat)), size)
        embed = resize(self.global_embed(global_feat), size)
        return self.local_embed(local) * act + embed


class GatherDistribute(nn.Module):
    """Gather the three levels at stride 16, fuse, inject the result into each level, expand."""

    def __init__(
        self, in_channels: tuple[int, int, int], out_channels: tuple[int, int, int]
    ) -> None:
        super().__init__()
        global_ch = in_channels[1]
        self.fuse = nn.Sequential(
            conv_bn_act(sum(in_channels), global_ch, 1), conv_bn_act(global_ch, global_ch, 3)
        )
        self.inject = nn.ModuleList(Inject(c, global_ch) for c in in_channels)
        self.expand = nn.ModuleList(
            conv_bn_act(i, o, 3) for i, o in zip(in_channels, out_channels, strict=True)
        )

    def gather(self, feats: list[Tensor]) -> Tensor:
        """(B, c0 + c1 + c2, H_1, W_1): every level at the middle level's size."""
        size = tuple(feats[1].shape[-2:])
        return torch.cat([resize(x, size) for x in feats], dim=1)

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        global_feat = self.fuse(self.gather(feats))
        out = [
            expand(inject(x, global_feat))
            for expand, inject, x in zip(self.expand, self.inject, feats, strict=True)
        ]
        return (out, None) if return_weights else out


@FUSIONS.register("gd")
def gd(
    in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], *, rfb: bool = False
) -> GatherDistribute:
    return GatherDistribute(in_channels, out_channels)
