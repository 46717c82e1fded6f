"""``none``: no cross-level fusion; each head reads its own level of the YOLOv3 neck."""

from __future__ import annotations

from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.models.fusions import FUSIONS


class NoFusion(nn.Module):
    """The baseline: each level keeps its own feature; a 3x3 conv widens it for the head.

    Level 2 needs no conv (the neck's last layer already is the official 3x3 before the head).
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            conv_bn_act(i, o, 3) if i != o else nn.Identity()
            for i, o in zip(in_channels, out_channels, strict=True)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        out = [conv(f) for conv, f in zip(self.convs, feats, strict=True)]
        return (out, None) if return_weights else out


@FUSIONS.register("none")
def none(
    in_channels: tuple[int, ...], out_channels: tuple[int, ...], *, rfb: bool = False
) -> NoFusion:
    return NoFusion(in_channels, out_channels)
