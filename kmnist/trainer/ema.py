"""An exponential moving average of a network's weights, the copy that is evaluated.

Batch-norm statistics are averaged with the weights, so the copy is self-consistent. The decay
warms up as min(decay, (1 + t) / (10 + t)) over the first steps, so a short run is not scored
on weights that still remember their initialisation. (torch's `AveragedModel` has no warm-up
and compares a device counter on every update, a GPU sync per step.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        floats = [(ema, raw) for ema, raw in pairs if ema.is_floating_point()]
        self._ema = [ema for ema, _ in floats]
        self._raw = [raw for _, raw in floats]  # the live tensors: optimisers update in place

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self._ema, self._raw, 1 - decay)
