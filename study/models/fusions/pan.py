"""``pan``: PANet's bottom-up path augmentation (Liu et al., "Path Aggregation Network for
Instance Segmentation", CVPR 2018, section 3.1) on top of the YOLOv3 neck's top-down path.

PANet adds a bottom-up path after FPN's top-down one; here the neck already is the top-down
path, so its outputs P5, P4, P3 (levels 0, 1, 2) are PANet's P_i, and the bottom-up blocks build

    N3 = P3
    N4 = conv3x3(conv3x3_s2(N3) + P4)
    N5 = conv3x3(conv3x3_s2(N4) + P5)

(each block: a stride-2 3x3 conv shrinks N_i, a lateral plain sum adds P_{i+1}, a 3x3 conv
makes N_{i+1}), then the expand conv widens each N to the head's channels, as for the other
strategies. Plain sums, no weights (``return_weights`` gives None).

Information flows one way only: N5 reads all three levels, N4 levels 1 and 2, N3 level 2 alone
(PANet's top-down half, which carries the coarse levels down, is the neck's).

Simplifications: PANet keeps one channel width on every level; here the widths differ, so the
stride-2 conv also maps N_i's channels to P_{i+1}'s (no separate 1x1 conv is needed); all
convs are conv+BN+LeakyReLU (``blocks.conv_bn_act``) where PANet uses conv+ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS


class BottomUpBlock(nn.Module):
    """N_{i+1} = conv3x3(conv3x3_s2(N_i) + P_{i+1}) (one PANet building block)."""

    def __init__(self, fine_ch: int, coarse_ch: int) -> None:
        super().__init__()
        self.down = conv_bn_act(fine_ch, coarse_ch, 3, 2)
        self.conv = conv_bn_act(coarse_ch, coarse_ch, 3)

    def forward(self, n_fine: Tensor, p_coarse: Tensor) -> Tensor:
        return self.conv(self.down(n_fine) + p_coarse)


class PANet(nn.Module):
    """[P5, P4, P3] -> bottom-up [N5, N4, N3] -> expand conv per level."""

    def __init__(
        self, in_channels: tuple[int, int, int], out_channels: tuple[int, int, int]
    ) -> None:
        super().__init__()
        c0, c1, c2 = in_channels
        self.bottom_up = nn.ModuleList([BottomUpBlock(c1, c0), BottomUpBlock(c2, c1)])  # -> N5, N4
        self.expand = nn.ModuleList(
            conv_bn_act(i, o, 3) for i, o in zip(in_channels, out_channels, strict=True)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        p5, p4, p3 = feats
        n3 = p3
        n4 = self.bottom_up[1](n3, p4)
        n5 = self.bottom_up[0](n4, p5)
        out = [conv(n) for conv, n in zip(self.expand, (n5, n4, n3), strict=True)]
        return (out, None) if return_weights else out


@FUSIONS.register("pan")
def pan(
    in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], *, rfb: bool = False
) -> PANet:
    return PANet(in_channels, out_channels)
