"""``bifpn``: one BiFPN layer (Tan et al., "EfficientDet: Scalable and Efficient Object
Detection", CVPR 2020, section 3) on the YOLOv3 neck's three levels.

A top-down pass, then a bottom-up pass; every node is a conv of a fast normalised fusion of
its inputs, ``sum_i w_i * in_i`` with ``w_i = relu(p_i) / (eps + sum_j relu(p_j))`` and one
learned scalar ``p_i`` per input edge and node (initialised to 1: the mean). With P5, P4, P3
(levels 0, 1, 2):

    P4_td  = conv((w1 * P4 + w2 * up(P5)) / (w1 + w2 + eps))
    P3_out = conv((w1 * P3 + w2 * up(P4_td)) / (w1 + w2 + eps))
    P4_out = conv((w1 * P4 + w2 * P4_td + w3 * down(P3_out)) / (w1 + w2 + w3 + eps))
    P5_out = conv((w1 * P5 + w2 * down(P4_out)) / (w1 + w2 + eps))

(each node has its own w; the normalisation is written out as in the paper). P4_out holds the
extra edge from the same level's input; P5, the top level, has no top-down node. Then the expand
conv widens each output to the head's channels, as for the other strategies.

No fusion weights are returned (``return_weights`` gives None): the weights are per input edge
and node, not per location, and an output is not a weighted sum of the three input levels
(convs sit between the nodes, so a product of node weights along the paths would be a share only
if those convs were the identity). ``scalar`` is the strategy with BiFPN's weights as shares.

Simplifications: resizing as ``resize.py`` (3x3 stride-2 conv down, 1x1 conv + nearest up,
the 1x1 only where channels differ) where EfficientDet uses max-pooling down and one channel
width on every level; node convs are 3x3 conv+BN+LeakyReLU where EfficientDet uses depthwise
separable convs with swish; one BiFPN layer, not a repeated stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS


class FusionNode(nn.Module):
    """conv(sum_i w_i * x_i), fast normalised fusion over the node's same-shaped inputs."""

    def __init__(self, channels: int, n_inputs: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.edge_weights = nn.Parameter(torch.ones(n_inputs))
        self.conv = conv_bn_act(channels, channels, 3)

    def normalised_weights(self) -> Tensor:
        p = F.relu(self.edge_weights)
        return p / (p.sum() + self.eps)  # (n_inputs,)

    def forward(self, *inputs: Tensor) -> Tensor:
        w = self.normalised_weights()
        return self.conv(sum(w[i] * x for i, x in enumerate(inputs)))


class Up(nn.Module):
    """Coarse -> twice finer: 1x1 conv (only if the channels differ) + nearest x2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.compress = conv_bn_act(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.compress(x), scale_factor=2, mode="nearest")


class BiFPN(nn.Module):
    """One BiFPN layer on [P5, P4, P3], then an expand conv per level."""

    def __init__(
        self, in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], eps: float
    ) -> None:
        super().__init__()
        c0, c1, c2 = in_channels
        self.up_5_to_4, self.up_4_to_3 = Up(c0, c1), Up(c1, c2)
        self.down_3_to_4 = conv_bn_act(c2, c1, 3, 2)
        self.down_4_to_5 = conv_bn_act(c1, c0, 3, 2)
        self.p4_td = FusionNode(c1, 2, eps)
        self.p3_out = FusionNode(c2, 2, eps)
        self.p4_out = FusionNode(c1, 3, eps)
        self.p5_out = FusionNode(c0, 2, eps)
        self.expand = nn.ModuleList(
            conv_bn_act(i, o, 3) for i, o in zip(in_channels, out_channels, strict=True)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        p5, p4, p3 = feats
        p4_td = self.p4_td(p4, self.up_5_to_4(p5))
        p3_out = self.p3_out(p3, self.up_4_to_3(p4_td))
        p4_out = self.p4_out(p4, p4_td, self.down_3_to_4(p3_out))
        p5_out = self.p5_out(p5, self.down_4_to_5(p4_out))
        out = [conv(x) for conv, x in zip(self.expand, (p5_out, p4_out, p3_out), strict=True)]
        return (out, None) if return_weights else out


@FUSIONS.register("bifpn")
def bifpn(
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    *,
    rfb: bool = False,
    eps: float = 1e-4,
) -> BiFPN:
    """``eps``: keeps the normalisation finite when every weight is at zero (BiFPN: 1e-4)."""
    return BiFPN(in_channels, out_channels, eps)
