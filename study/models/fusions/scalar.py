"""``scalar``: one learned, normalised weight per input level (BiFPN's "fast normalized fusion").

For output level l, ``w_i = relu(p_i) / (eps + sum_j relu(p_j))`` with three learned scalars
``p`` (initialised to 1, so the fusion starts as the mean), and ``y^l = sum_i w_i x^{i->l}``:
the weights are the same at every location. This is the contrast users of the official code
asked about: ASFF's weights are per location, BiFPN's per level (Tan et al., EfficientDet,
section 3.3). Same resizing and expand conv as ASFF (``resize.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.fusions import FUSIONS
from study.models.fusions.resize import LevelResize, PerLevelFusion, expand_conv


class ScalarLevel(LevelResize):
    def __init__(
        self, level: int, in_channels: tuple[int, int, int], out_ch: int, eps: float
    ) -> None:
        super().__init__(level, in_channels)
        self.eps = eps
        self.level_weights = nn.Parameter(torch.ones(3))
        self.expand = expand_conv(self, out_ch)

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        r0, r1, r2 = self.resize(x0, x1, x2)
        p = F.relu(self.level_weights)
        w = p / (p.sum() + self.eps)  # (3,)
        if self.detach_weights:
            w = w.detach()
        fused = r0 * w[0] + r1 * w[1] + r2 * w[2]
        b, _, h, wd = r0.shape
        return self.expand(fused), w.view(1, 3, 1, 1).expand(b, 3, h, wd)


@FUSIONS.register("scalar")
def scalar(
    in_channels: tuple[int, int, int],
    out_channels: tuple[int, int, int],
    *,
    rfb: bool = False,
    eps: float = 1e-4,
) -> PerLevelFusion:
    """``eps``: keeps the normalisation finite when every weight is at zero (BiFPN: 1e-4)."""
    return PerLevelFusion(
        [ScalarLevel(lvl, in_channels, out_channels[lvl], eps) for lvl in range(3)]
    )
