"""Feature-fusion registry: what sits between the neck and the per-level heads.

A fusion takes the neck's ``[P5, P4, P3]`` (channels ``in_channels``) and returns three maps with
``out_channels`` channels (the heads' inputs: 1024, 512, 256 times width). To add a strategy,
write one module that registers a builder here and one experiment file that names it.
"""

from __future__ import annotations

from torch import Tensor, nn

from study.models.blocks import conv_bn_act
from study.registry import Registry

FUSIONS: Registry = Registry("fusion")


class NoFusion(nn.Module):
    """The baseline: each level keeps its own feature; a 3x3 conv widens it for the head.

    Level 2 needs no conv (the neck's last layer already is the official 3x3 before the head).
    """

    def __init__(
        self, in_channels: tuple[int, ...], out_channels: tuple[int, ...], **_: object
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            conv_bn_act(i, o, 3) if i != o else nn.Identity()
            for i, o in zip(in_channels, out_channels, strict=True)
        )

    def forward(self, feats: list[Tensor], return_weights: bool = False):  # noqa: ANN201
        out = [conv(f) for conv, f in zip(self.convs, feats, strict=True)]
        return (out, None) if return_weights else out


@FUSIONS.register("none")
def no_fusion(
    in_channels: tuple[int, ...], out_channels: tuple[int, ...], **kw: object
) -> NoFusion:
    return NoFusion(in_channels, out_channels, **kw)
