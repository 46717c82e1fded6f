"""What the fusion strategies share: bringing levels to one output level, the per-level
container, and the own-level container of the strategies that fuse nothing.

The resizing is the paper's section 3.1 as the official ASFF module does it, so that the
strategies differ only in how they combine the resized maps (weighted sum, sum, concat, ...):

- to level 0 (stride 32): from stride 16 a 3x3 stride-2 conv; from stride 8 a stride-2 max-pool,
  then a 3x3 stride-2 conv;
- to level 1 (stride 16): from stride 32 a 1x1 conv, then nearest x2; from stride 8 a 3x3 s2 conv;
- to level 2 (stride 8): from stride 32 a 1x1 conv, then nearest x4; from stride 16 nearest x2
  (the official module has no 1x1 conv there because the channels already match; one is added
  only when they differ).

After the combination, a 3x3 "expand" conv widens the fused map to the head's channels.

The package re-exports these (``from study.models.fusions import LevelResize``), so every fusion
run imports this module: dvc.yaml lists it for every run, beside the run's own strategy module.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import conv_bn_act


class LevelResize(nn.Module):
    """Resizes levels (ordered stride 32, 16, 8) to output ``level``'s size and channels.

    ``sources``: the input levels this module brings to ``level`` (all three by default; a
    strategy that fuses a subset, as AFPN's first stage, builds only their convs). Subclasses
    combine the resized maps; layer names follow the official module, so ASFF's weights import by
    renaming prefixes only.
    """

    # ``study analyze`` sets this to cut the gradient through a strategy's weights (the paper's
    # section 3.3 argument treats alpha, beta, gamma as constants); it changes no output.
    detach_weights: bool = False

    def __init__(
        self, level: int, in_channels: tuple[int, int, int], sources: Iterable[int] = (0, 1, 2)
    ) -> None:
        super().__init__()
        self.level = level
        self.channels = inter = in_channels[level]  # every level is brought to these channels
        sources = set(sources)
        c0, c1, c2 = in_channels
        if level == 0:
            if 1 in sources:
                self.stride_level_1 = conv_bn_act(c1, inter, 3, 2)
            if 2 in sources:
                self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        elif level == 1:
            if 0 in sources:
                self.compress_level_0 = conv_bn_act(c0, inter, 1)
            if 2 in sources:
                self.stride_level_2 = conv_bn_act(c2, inter, 3, 2)
        else:
            if 0 in sources:
                self.compress_level_0 = conv_bn_act(c0, inter, 1)
            if 1 in sources and c1 != inter:
                self.compress_level_1 = conv_bn_act(c1, inter, 1)

    def bring(self, source: int, x: Tensor) -> Tensor:
        """Input level ``source``'s map ``x`` at this level's resolution and channels."""
        if source == self.level:
            return x
        if self.level == 0:
            if source == 1:
                return self.stride_level_1(x)
            return self.stride_level_2(F.max_pool2d(x, 3, 2, 1))
        if source == 2:  # to level 1
            return self.stride_level_2(x)
        if source == 0:  # to level 1 or 2
            scale = 2 if self.level == 1 else 4
            return F.interpolate(self.compress_level_0(x), scale_factor=scale, mode="nearest")
        if hasattr(self, "compress_level_1"):  # level 1 to level 2
            x = self.compress_level_1(x)
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def resize(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three levels at this level's resolution and channels."""
        return self.bring(0, x0), self.bring(1, x1), self.bring(2, x2)


class PerLevelFusion(nn.Module):
    """One fusion module per output level; each returns ``(fused, weights or None)``."""

    def __init__(self, levels: list[nn.Module]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        outs, weights = zip(*(m(*feats) for m in self.levels), strict=True)
        weights = None if all(w is None for w in weights) else list(weights)
        return (list(outs), weights) if return_weights else list(outs)


class OwnLevel(nn.Module):
    """No fusion: output level l is ``convs[l]`` of input level l alone (no weights)."""

    def __init__(self, convs: Iterable[nn.Module]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        out = [conv(f) for conv, f in zip(self.convs, feats, strict=True)]
        return (out, None) if return_weights else out


def widen_conv(in_ch: int, out_ch: int) -> nn.Module:
    """``none``'s 3x3 conv that widens a level to its head's channels (identity if equal)."""
    return conv_bn_act(in_ch, out_ch, 3) if in_ch != out_ch else nn.Identity()


def expand_conv(level: LevelResize, out_ch: int) -> nn.Sequential:
    """The 3x3 conv after the combination that widens the fused map to the head's channels."""
    return conv_bn_act(level.channels, out_ch, 3)
