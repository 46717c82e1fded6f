"""Per-level detection heads: YOLOv3's anchor head and the official guided-anchoring head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from study.models.blocks import RFB
from study.models.outputs import LevelOutput
from study.registry import Registry

HEADS: Registry = Registry("head")


def _to_slots(x: Tensor, slots: int) -> Tensor:
    """(B, slots*K, H, W) -> (B, slots, H, W, K)."""
    b, c, h, w = x.shape
    return x.view(b, slots, c // slots, h, w).permute(0, 1, 3, 4, 2).contiguous()


class YOLOv3Head(nn.Module):
    """Original YOLOv3: one 1x1 conv, three fixed anchors per location."""

    anchor_free = False

    def __init__(
        self,
        in_ch: int,
        num_classes: int,
        anchors: Sequence[tuple[float, float]],
        stride: int,
        **_: object,
    ) -> None:
        super().__init__()
        self.num_classes, self.stride = num_classes, stride
        self.register_buffer(
            "anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False
        )
        self.conv = nn.Conv2d(in_ch, len(anchors) * (5 + num_classes), 1)

    def forward(self, x: Tensor) -> LevelOutput:
        raw = _to_slots(self.conv(x), len(self.anchors))
        anchor_wh = self.anchors.to(raw.dtype).view(1, -1, 1, 1, 2).expand(*raw.shape[:4], 2)
        return LevelOutput(raw, anchor_wh, self.stride, False)


class FeatureAdaption(nn.Module):
    """Guided anchoring's feature adaption: offsets from the predicted anchor shapes drive a 3x3
    deformable conv (one deformable group per anchor). ASFF* puts an RFB block in front."""

    def __init__(self, in_ch: int, n_anchors: int, rfb: bool = False) -> None:
        super().__init__()
        self.rfb = RFB(in_ch) if rfb else None
        self.conv_offset = nn.Conv2d(2 * n_anchors, 2 * 9 * n_anchors, 1, groups=n_anchors)
        # torchvision's deform_conv2d runs on CPU and CUDA (the official build is CUDA-only).
        self.dconv = DeformConv2d(in_ch, in_ch, 3, padding=1)

    def forward(self, x: Tensor, shape_logits: Tensor) -> Tensor:
        if self.rfb is not None:
            x = self.rfb(x)
        offset = self.conv_offset(shape_logits.detach())
        return self.dconv(x, offset.to(x.dtype))


class GuidedAnchorHead(nn.Module):
    """The official strong-baseline head: three anchor-based slots plus one anchor-free slot.

    A 1x1 conv predicts every slot's shape (log-scale factors); anchor-based slots scale their
    predefined anchor, the anchor-free slot scales ``4 * stride``. The shapes are returned with
    gradient (the anchor-shape loss trains them) in ``LevelOutput.anchor_wh``.
    """

    anchor_free = True

    def __init__(
        self,
        in_ch: int,
        num_classes: int,
        anchors: Sequence[tuple[float, float]],
        stride: int,
        rfb: bool = False,
        **_: object,
    ) -> None:
        super().__init__()
        self.num_classes, self.stride = num_classes, stride
        self.n_slots = len(anchors) + 1
        priors = [*anchors, (4.0 * stride, 4.0 * stride)]
        self.register_buffer("priors", torch.tensor(priors, dtype=torch.float32), persistent=False)
        self.guide_wh = nn.Conv2d(in_ch, 2 * self.n_slots, 1)
        self.feature_adaption = FeatureAdaption(in_ch, self.n_slots, rfb)
        self.conv = nn.Conv2d(in_ch, self.n_slots * (5 + num_classes), 1)

    def forward(self, x: Tensor) -> LevelOutput:
        shape_logits = self.guide_wh(x)  # (B, 2 * slots, H, W)
        raw = _to_slots(self.conv(self.feature_adaption(x, shape_logits)), self.n_slots)
        wh = _to_slots(shape_logits.float().exp(), self.n_slots)  # (B, slots, H, W, 2)
        anchor_wh = wh * self.priors.view(1, -1, 1, 1, 2)
        return LevelOutput(raw, anchor_wh, self.stride, True)


@HEADS.register("yolov3")
def yolov3_head(**kw: object) -> YOLOv3Head:
    return YOLOv3Head(**kw)  # type: ignore[arg-type]


@HEADS.register("ga")
def guided_anchor_head(**kw: object) -> GuidedAnchorHead:
    return GuidedAnchorHead(**kw)  # type: ignore[arg-type]
