"""Exponential moving average of a model's weights (YOLOX's ModelEMA, written anew).

``decay_t = decay * (1 - exp(-t / ramp))`` after ``t`` updates: the average follows the weights
closely at first and settles to the ``decay`` horizon (about ``1 / (1 - decay)`` updates). BN
running statistics are averaged like the weights; integer buffers are copied. Not in the
official ASFF code; a CPU-profile choice (short runs with a noisy high learning rate gain from
averaging the last few hundred updates, measured in the README).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` whose tensors are the running average of ``model``'s."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0) -> None:
        if not 0.0 <= decay < 1.0 or ramp <= 0:
            raise ValueError(f"ema: decay must be in [0, 1) and ramp > 0, got {decay}, {ramp}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = float(decay), float(ramp), 0

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = source[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(value.to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
