"""``none``: no cross-level fusion; each head reads its own level of the YOLOv3 neck."""

from __future__ import annotations

from study.models.fusions import FUSIONS
from study.models.fusions.resize import OwnLevel, widen_conv


class NoFusion(OwnLevel):
    """The baseline: each level keeps its own feature; a 3x3 conv widens it for the head.

    Level 2 needs no conv (the neck's last layer already is the official 3x3 before the head).
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: tuple[int, ...]) -> None:
        super().__init__(widen_conv(i, o) for i, o in zip(in_channels, out_channels, strict=True))


@FUSIONS.register("none")
def none(
    in_channels: tuple[int, ...], out_channels: tuple[int, ...], *, rfb: bool = False
) -> NoFusion:
    return NoFusion(in_channels, out_channels)
