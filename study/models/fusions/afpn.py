"""``afpn``: asymptotic fusion (Yang et al., "AFPN: Asymptotic Feature Pyramid Network for Object
Detection", arXiv 2306.15988, 2023): adjacent levels first, the distant one later, every step
an adaptive spatial fusion (ASFF's per-location softmax weights over the step's inputs).

With this study's three levels x^0, x^1, x^2 (stride 32, 16, 8), the two finest are adjacent and
fused first, then the coarsest joins:

- stage 1, levels 1 and 2 at each of their resolutions (l = 1, 2), 2-way weights:
      s^l = conv3x3(a^l * x^{1->l} + b^l * x^{2->l}),          a^l + b^l = 1 at every location
- stage 2, all three into each output level (l = 0, 1, 2), 3-way weights on the stage-1 maps:
      y^l = expand(alpha^l * x^{0->l} + beta^l * s^{1->l} + gamma^l * s^{2->l})

Each step's weights are a softmax over a 1x1 conv of its inputs' compressed maps (conv+BN+
LeakyReLU, ``compress_c`` channels), as ASFF's. ``return_weights`` gives stage 2's alpha, beta,
gamma: the shares of level 0 and of the two stage-1 maps, which already mix levels 1 and 2.
Both stages' modules are ``LevelResize``s (stage 1 bringing only levels 1 and 2), so
``detach_weights``, which ``study analyze`` sets on each, cuts the gradient through the weights
of both stages.

Simplifications: three levels where the paper has four (it starts from two backbone levels;
here, as for ``asff``, the inputs are the YOLOv3 neck's top-down outputs); resizing as
``resize.py`` (3x3 stride-2 convs down; 1x1 conv + nearest up) rather than the paper's
stride-k k x k convs and bilinear upsampling; one 3x3 conv after each stage-1 fusion (and the
expand conv after stage 2) in place of the paper's residual units; ``compress_c`` as ``asff``'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS
from study.models.fusions.resize import LevelResize, PerLevelFusion, expand_conv


class SpatialWeights(nn.Module):
    """Per-location softmax weights over ``n`` same-shaped maps -> (B, n, H, W)."""

    def __init__(self, channels: int, n: int, compress_c: int) -> None:
        super().__init__()
        self.compress = nn.ModuleList(conv_bn_act(channels, compress_c, 1) for _ in range(n))
        self.logits = nn.Conv2d(n * compress_c, n, 1)

    def forward(self, maps: list[Tensor], detach: bool) -> Tensor:
        squeezed = [c(m) for c, m in zip(self.compress, maps, strict=True)]
        w = F.softmax(self.logits(torch.cat(squeezed, 1)), dim=1)
        return w.detach() if detach else w


def weighted_sum(maps: list[Tensor], w: Tensor) -> Tensor:
    """sum_i w[:, i] * maps[i], the weights broadcast over channels."""
    return sum(m * w[:, i : i + 1] for i, m in enumerate(maps))


class AdjacentFusion(LevelResize):
    """Stage 1 at ``level`` (1 or 2): levels 1 and 2 resized there, 2-way weights, 3x3 conv."""

    def __init__(self, level: int, in_channels: tuple[int, int, int], compress_c: int) -> None:
        super().__init__(level, in_channels, sources=(1, 2))
        self.weights = SpatialWeights(self.channels, 2, compress_c)
        self.fuse = conv_bn_act(self.channels, self.channels, 3)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        maps = [self.bring(1, x1), self.bring(2, x2)]
        return self.fuse(weighted_sum(maps, self.weights(maps, self.detach_weights)))


class AFPNLevel(LevelResize):
    """Stage 2 at output ``level``: level 0 and the two stage-1 maps, 3-way weights, expand."""

    def __init__(
        self, level: int, in_channels: tuple[int, int, int], out_ch: int, compress_c: int
    ) -> None:
        super().__init__(level, in_channels)
        self.weights = SpatialWeights(self.channels, 3, compress_c)
        self.expand = expand_conv(self, out_ch)

    def forward(self, x0: Tensor, s1: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        maps = list(self.resize(x0, s1, s2))
        w = self.weights(maps, self.detach_weights)  # (B, 3, H, W): alpha, beta, gamma
        return self.expand(weighted_sum(maps, w)), w


class AFPN(PerLevelFusion):
    """Stage 1 (``adjacent``) on levels 1 and 2, then stage 2 (``levels``) into every level."""

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        out_channels: tuple[int, int, int],
        compress_c: int = 16,
    ) -> None:
        super().__init__(
            [AFPNLevel(lvl, in_channels, out_channels[lvl], compress_c) for lvl in range(3)]
        )
        self.adjacent = nn.ModuleList(
            AdjacentFusion(lvl, in_channels, compress_c) for lvl in (1, 2)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        x0, x1, x2 = feats
        s1, s2 = (m(x1, x2) for m in self.adjacent)
        return super().forward([x0, s1, s2], return_weights)


@FUSIONS.register("afpn")
def afpn(
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    *,
    rfb: bool = False,
    compress_c: int | None = None,
) -> AFPN:
    """``compress_c``: channels of each input's weight branch (default as ``asff``: 16, or 8
    with RFB)."""
    return AFPN(in_channels, out_channels, compress_c=compress_c or (8 if rfb else 16))
