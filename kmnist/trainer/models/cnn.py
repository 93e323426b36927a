"""Convolutional networks for 28x28 grey images, built from a config dict."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 10


class Dropout(nn.Module):
    """Dropout with a cheaper CPU mask than `nn.Dropout`'s.

    On the CPU, `bernoulli_` draws one generator call per element and takes a fifth of a
    starter-CNN step; here each element gets one byte of a 64-bit draw instead, so `p` is
    rounded to a multiple of 1/256 there. The mask is made in x's dtype and layout: a
    mixed-dtype product (bf16 times bool) takes a slow casting loop, both ways. On the starter's
    100 x 64 x 12 x 12 bf16 activations, forward and backward took 1.4 ms against 2.4 for a bool
    mask from 7-byte draws (Xeon, 2026-12-02).
    Other devices use `F.dropout` as it is.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        threshold = min(round(self.p * 256), 255)
        n = x.numel()
        # the full 64-bit range: 8 random bytes a draw, and a view of them, not a copy
        words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), None)
        random_bytes = words.view(torch.uint8)[:n]
        layout = torch.empty_like(x, dtype=torch.uint8)  # x's strides, or contiguous ones
        random_bytes = random_bytes.as_strided(layout.shape, layout.stride())
        # keep = byte >= threshold, as 0/1 in x's dtype: clamp(byte - (threshold - 1), 0, 1)
        # is exact (small integers) and vectorised, where a uint8 compare and a bool cast are
        # not: 0.33 ms against 1.2 for the starter's mask (Zen 4 EPYC, 2026-12-02)
        keep = random_bytes.to(x.dtype).sub_(threshold - 1).clamp_(0, 1)
        return (x * keep).mul_(256 / (256 - threshold))  # 4/3 is inexact in bf16

    def extra_repr(self) -> str:
        return f"p={self.p}"


def starter_cnn(config: dict[str, Any]) -> nn.Sequential:
    """The KMNIST benchmark's starter network: conv-conv-maxpool-dropout-dense-dropout.

    The second ReLU runs after the pooling: max and ReLU commute, values and gradients alike
    (the same element wins each window), and the ReLU then sees a quarter of the elements.
    Weights are channels-last, so the convs and the pooling run in oneDNN's fast layout.
    """
    l1, l2, fc1 = config["l1_size"], config["l2_size"], config["fc1_size"]
    return nn.Sequential(
        nn.Conv2d(1, l1, 3), nn.ReLU(),
        nn.Conv2d(l1, l2, 3), nn.MaxPool2d(2),
        nn.ReLU(), Dropout(config["dropout_1"]),
        nn.Flatten(), nn.Linear(l2 * 12 * 12, fc1), nn.ReLU(),
        Dropout(config["dropout_2"]), nn.Linear(fc1, N_CLASSES),
    ).to(memory_format=torch.channels_last)  # fmt: skip


def deep_cnn(config: dict[str, Any]) -> nn.Sequential:
    """`depth` blocks of two 3x3 convs (+ batch norm), width doubling, 2x2 pooling between."""
    layers: list[nn.Module] = []
    channels, size = 1, 28
    for block in range(config["depth"]):
        width = config["width"] * 2**block
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=not config["batch_norm"])]
            layers += [nn.BatchNorm2d(width)] if config["batch_norm"] else []
            layers += [nn.ReLU(inplace=True)]
            channels = width
        if size >= 2 and block < config["depth"] - 1:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), Dropout(config["dropout"])]
    return nn.Sequential(*layers, nn.Linear(channels, N_CLASSES))
