"""What a detector returns per pyramid level (see docs/design.md)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LevelOutput(NamedTuple):
    raw: Tensor  # (B, A, H, W, 5 + C): tx, ty, tw, th, objectness logit, class logits
    anchor_wh: Tensor  # (B, A, H, W, 2): prior w, h in input pixels that tw, th scale
    stride: int
    anchor_free: bool  # True when slot A-1 is the anchor-free slot of the guided-anchoring head
