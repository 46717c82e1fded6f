"""A single-shot detector: backbone -> neck -> fusion -> one head per level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.anchors import ANCHOR_MASKS, STRIDES
from study.models.outputs import LevelOutput


class Detector(nn.Module):
    """One ``LevelOutput`` per level (stride 32, 16, 8); ``decode`` turns them into boxes."""

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        fusion: nn.Module,
        heads: Sequence[nn.Module],
        anchors: Sequence[tuple[float, float]],
        num_classes: int,
        spec: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.fusion = backbone, neck, fusion
        self.heads = nn.ModuleList(heads)
        self.anchors = tuple(anchors)
        self.anchor_masks = ANCHOR_MASKS
        self.strides = STRIDES
        self.num_classes = num_classes
        self.spec = dict(spec or {})  # how it was built, recorded with results

    def forward(self, x: Tensor, return_fusion_weights: bool = False):  # noqa: ANN201
        """``x`` (B, 3, H, W), H and W multiples of 32 -> list of LevelOutput.

        With ``return_fusion_weights`` also returns the fusion's per-level weight maps
        ((B, 3, H_l, W_l) each: alpha, beta, gamma) or None for fusions without weights.
        """
        fused, weights = self.fuse(self.features(x))
        outputs = self.predict_levels(fused)
        return (outputs, weights) if return_fusion_weights else outputs

    def features(self, x: Tensor) -> list[Tensor]:
        """The neck's three maps ``[P5, P4, P3]``: what the fusion reads (x^1, x^2, x^3)."""
        return self.neck(*self.backbone(x))

    def fuse(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor] | None]:
        """The fusion's output maps (one per level) and its weight maps (or None)."""
        return self.fusion(feats, return_weights=True)

    def predict_levels(self, fused: Sequence[Tensor]) -> list[LevelOutput]:
        """One head per fused level -> ``LevelOutput`` s."""
        return [head(f) for head, f in zip(self.heads, fused, strict=True)]

    @staticmethod
    def decode(outputs: Sequence[LevelOutput]) -> Tensor:
        """-> (B, N, 5 + C): cx, cy, w, h (input pixels), objectness and class probabilities.

        Levels are concatenated in order, each flattened over (slot, y, x), as the official
        evaluation does.
        """
        decoded = []
        for out in outputs:
            raw = out.raw.float()
            b, a, h, w, n = raw.shape
            ys, xs = torch.meshgrid(
                torch.arange(h, device=raw.device, dtype=raw.dtype),
                torch.arange(w, device=raw.device, dtype=raw.dtype),
                indexing="ij",
            )
            cx = (raw[..., 0].sigmoid() + xs) * out.stride
            cy = (raw[..., 1].sigmoid() + ys) * out.stride
            wh = raw[..., 2:4].exp() * out.anchor_wh.float()
            probs = raw[..., 4:].sigmoid()
            box = torch.cat([cx.unsqueeze(-1), cy.unsqueeze(-1), wh, probs], dim=-1)
            decoded.append(box.view(b, a * h * w, n))
        return torch.cat(decoded, dim=1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.decode(self.forward(x))

    def dropblocks(self) -> list[nn.Module]:
        """The neck's scheduled DropBlock layers (ASFF*)."""
        return list(getattr(self.neck, "dropblocks", []))
