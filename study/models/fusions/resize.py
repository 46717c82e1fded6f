"""What the fusion strategies share: bringing every level to one output level, and the container.

The resizing is the paper's section 3.1 as the official ASFF module does it, so that the
strategies differ only in how they combine the resized maps (weighted sum, sum, concat, ...):

- to level 0 (stride 32): from stride 16 a 3x3 stride-2 conv; from stride 8 a stride-2 max-pool,
  then a 3x3 stride-2 conv;
- to level 1 (stride 16): from stride 32 a 1x1 conv, then nearest x2; from stride 8 a 3x3 s2 conv;
- to level 2 (stride 8): from stride 32 a 1x1 conv, then nearest x4; from stride 16 nearest x2
  (the official module has no 1x1 conv there because the channels already match; one is added
  only when they differ).

After the combination, a 3x3 "expand" conv widens the fused map to the head's channels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import conv_bn_act


class LevelResize(nn.Module):
    """Resizes three levels (ordered stride 32, 16, 8) to output ``level``'s size and channels.

    Subclasses combine the resized maps; layer names follow the official module, so ASFF's
    weights import by renaming prefixes only.
    """

    # ``study analyze`` sets this to cut the gradient through a strategy's weights (the paper's
    # section 3.3 argument treats alpha, beta, gamma as constants); it changes no output.
    detach_weights: bool = False

    def __init__(self, level: int, in_channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.level = level
        self.channels = inter = in_channels[level]  # every level is brought to these channels
        c0, c1, c2 = in_channels
        if level == 0:
            self.stride_level_1 = conv_bn_act(c1, inter, 3, 2)
            self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        elif level == 1:
            self.compress_level_0 = conv_bn_act(c0, inter, 1)
            self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        else:
            self.compress_level_0 = conv_bn_act(c0, inter, 1)
            if c1 != inter:
                self.compress_level_1 = conv_bn_act(c1, inter, 1)

    def resize(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three levels at this level's resolution and channels."""
        if self.level == 0:
            return x0, self.stride_level_1(x1), self.stride_level_2(F.max_pool2d(x2, 3, 2, 1))
        if self.level == 1:
            up0 = F.interpolate(self.compress_level_0(x0), scale_factor=2, mode="nearest")
            return up0, x1, self.stride_level_2(x2)
        up0 = F.interpolate(self.compress_level_0(x0), scale_factor=4, mode="nearest")
        if hasattr(self, "compress_level_1"):
            x1 = self.compress_level_1(x1)
        return up0, F.interpolate(x1, scale_factor=2, mode="nearest"), x2


class PerLevelFusion(nn.Module):
    """One fusion module per output level; each returns ``(fused, weights or None)``."""

    def __init__(self, levels: list[nn.Module]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        outs, weights = zip(*(m(*feats) for m in self.levels), strict=True)
        weights = None if all(w is None for w in weights) else list(weights)
        return (list(outs), weights) if return_weights else list(outs)


def expand_conv(level: LevelResize, out_ch: int) -> nn.Sequential:
    """The 3x3 conv after the combination that widens the fused map to the head's channels."""
    return conv_bn_act(level.channels, out_ch, 3)
