"""Batched augmentation on the device: random affine (shift, rotation, zoom) and erasing.

One call transforms a whole batch with tensor ops; nothing runs per sample on the host.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def is_enabled(config: dict[str, Any]) -> bool:
    keys = ("aug_translate", "aug_rotate", "aug_scale", "aug_erasing")
    return any(config[key] > 0 for key in keys)


def augment(images: torch.Tensor, config: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """`images` (n, 1, h, w) transformed as `config`'s aug_* knobs ask."""
    if config["aug_translate"] or config["aug_rotate"] or config["aug_scale"]:
        images = random_affine(
            images, config["aug_translate"], config["aug_rotate"], config["aug_scale"], gen
        )
    if config["aug_erasing"]:
        images = random_erasing(images, config["aug_erasing"], gen)
    return images


def _uniform(n: int, spread: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """n draws from U(-spread, spread)."""
    return (torch.rand(n, generator=gen, device=device) * 2 - 1) * spread


def random_affine(
    images: torch.Tensor, translate: float, rotate: float, scale: float, gen: torch.Generator
) -> torch.Tensor:
    n, device = len(images), images.device
    angle = _uniform(n, math.radians(rotate), gen, device)
    zoom = 1 + _uniform(n, scale, gen, device)
    shift = torch.stack([_uniform(n, 2 * translate, gen, device) for _ in range(2)], 1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input coordinates
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def random_erasing(
    images: torch.Tensor,
    probability: float,
    gen: torch.Generator,
    area: tuple[float, float] = (0.02, 0.2),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Zero one random rectangle in each image with `probability` (as torchvision's)."""
    n, _, h, w = images.shape
    device = images.device
    rand = lambda: torch.rand(n, generator=gen, device=device)  # noqa: E731
    target = (area[0] + rand() * (area[1] - area[0])) * h * w
    log_ratio = math.log(ratio[0]) + rand() * (math.log(ratio[1]) - math.log(ratio[0]))
    aspect = torch.exp(log_ratio)
    eh = torch.sqrt(target * aspect).round().clamp(1, h)
    ew = torch.sqrt(target / aspect).round().clamp(1, w)
    top = (rand() * (h - eh + 1)).floor()
    left = (rand() * (w - ew + 1)).floor()
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    box = in_rows[:, :, None] & in_cols[:, None, :] & (rand() < probability)[:, None, None]
    return images.masked_fill(box[:, None], 0.0)
