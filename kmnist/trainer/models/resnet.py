"""A pre-activation residual network for 28x28 grey images, ResNet-9 style.

    stem    conv3x3 1 -> width                                      28x28
    stage i BN-ReLU-conv3x3 (widen by width_growth), max-pool 2,    14, 7, 4, 2
            then `blocks` residual blocks x + f(x), f = (BN-ReLU-conv3x3) x 2 [-> SE]
    head    BN-ReLU, global max-pool, dropout, linear

The stem stays at full resolution and every stage halves it, so most of the arithmetic runs
at 14x14 and below: width 24 with 3 stages is a net that trains in minutes on two CPU cores,
width 96 with 2 blocks per stage a GPU net of millions of parameters.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from kmnist.trainer.models.cnn import N_CLASSES, Dropout


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)  # a batch norm follows or precedes


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: x * sigmoid(W2 relu(W1 mean(x)))."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = max(4, round(channels * ratio))
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class PreActBlock(nn.Module):
    """x + conv(relu(bn(conv(relu(bn(x)))))): the identity path carries no normalisation."""

    def __init__(self, channels: int, se_ratio: float) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            _conv(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            _conv(channels, channels),
            SqueezeExcite(channels, se_ratio) if se_ratio > 0 else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def stage_widths(config: dict[str, Any]) -> list[int]:
    """Channels of the stem and of each stage."""
    width, growth = config["width"], config["width_growth"]
    return [max(1, round(width * growth**i)) for i in range(config["stages"] + 1)]


def resnet(config: dict[str, Any]) -> nn.Sequential:
    widths = stage_widths(config)
    layers: list[nn.Module] = [_conv(1, widths[0])]
    for c_in, c_out in itertools.pairwise(widths):
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), _conv(c_in, c_out)]
        layers += [nn.MaxPool2d(2, ceil_mode=True)]  # 7 -> 4 keeps the last row and column
        layers += [PreActBlock(c_out, config["se_ratio"]) for _ in range(config["blocks"])]
    layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), Dropout(config["dropout"])]
    return nn.Sequential(*layers, nn.Linear(widths[-1], N_CLASSES))
