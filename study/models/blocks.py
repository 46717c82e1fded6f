"""Layers shared by the backbone, neck, fusions and heads.

Module names inside ``conv_bn_act`` (``conv``, ``batch_norm``, ``leaky``) follow the official
code, so the importer's key mapping stays a renaming of prefixes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import DropBlock2d


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """Channels after the width multiplier, rounded to a multiple of ``divisor`` (at least it)."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def conv_bn_act(in_ch: int, out_ch: int, ksize: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> LeakyReLU(0.1), 'same' padding: Darknet's basic layer."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_ch, out_ch, ksize, stride, (ksize - 1) // 2, bias=False),
            batch_norm=nn.BatchNorm2d(out_ch),
            leaky=nn.LeakyReLU(0.1),
        )
    )


class ResBlocks(nn.Module):
    """``n`` Darknet residual units (1x1 halve, 3x3 restore); ``shortcut=False`` drops the add."""

    def __init__(self, ch: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.module_list = nn.ModuleList(
            nn.ModuleList([conv_bn_act(ch, ch // 2, 1), conv_bn_act(ch // 2, ch, 3)])
            for _ in range(n)
        )

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.module_list:
            h = x
            for layer in unit:
                h = layer(h)
            x = x + h if self.shortcut else h
        return x


class SPP(nn.Module):
    """Spatial pyramid pooling (max-pool 5/9/13, stride 1), concatenated with the input."""

    def forward(self, x: Tensor) -> Tensor:
        pools = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in (5, 9, 13)]
        return torch.cat([x, *pools], dim=1)


class ScheduledDropBlock(nn.Module):
    """``torchvision.ops.DropBlock2d`` whose block size and keep probability change by epoch.

    Off (identity) until ``reset`` is called with ``keep_prob < 1``, as in the official code.
    """

    def __init__(self) -> None:
        super().__init__()
        self.block_size = 1
        self.keep_prob = 1.0
        self.drop = DropBlock2d(p=0.0, block_size=1)

    def reset(self, block_size: int, keep_prob: float) -> None:
        self.block_size, self.keep_prob = int(block_size), float(keep_prob)
        self.drop = DropBlock2d(p=1.0 - self.keep_prob, block_size=self.block_size)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.keep_prob >= 1.0:
            return x
        return self.drop(x)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, keep_prob={self.keep_prob}"


class RFB(nn.Module):
    """Receptive field block (ASFF*): four branches of growing dilation, concatenated.

    Plain convolutions with bias and no normalisation or activation, as the official block.
    """

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        c = in_ch // 4

        def conv(i: int, o: int, k: int, d: int = 1) -> nn.Conv2d:
            return nn.Conv2d(i, o, k, 1, padding=d * (k - 1) // 2, dilation=d)

        self.branch_0 = nn.Sequential(conv(in_ch, c, 1))
        self.branch_1 = nn.Sequential(conv(in_ch, c, 1), conv(c, c, 3))
        self.branch_2 = nn.Sequential(conv(in_ch, c, 1), conv(c, c, 3), conv(c, c, 3, 2))
        self.branch_3 = nn.Sequential(conv(in_ch, c, 1), conv(c, c, 5), conv(c, c, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch_0, self.branch_1, self.branch_2, self.branch_3)
        return torch.cat([b(x) for b in branches], dim=1)
