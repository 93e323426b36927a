"""Batched augmentation on the device: whole-pixel shifts, random affine (shift, rotation,
zoom) with elastic distortion, stroke thinning and thickening, erasing, and batch mixing
(mixup, cutmix) with soft labels.

One call transforms a whole batch with tensor ops; nothing runs per sample on the host. No
flips: characters are not mirror-symmetric.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def is_enabled(config: dict[str, Any]) -> bool:
    keys = ("aug_shift", "aug_translate", "aug_rotate", "aug_scale", "aug_elastic", "aug_stroke",
            "aug_erasing")  # fmt: skip
    return any(config[key] > 0 for key in keys)


def augment(images: torch.Tensor, config: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """`images` (n, 1, h, w) transformed as `config`'s aug_* knobs ask."""
    if config["aug_shift"]:
        images = random_shift(images, config["aug_shift"], gen)
    if any(config[key] for key in ("aug_translate", "aug_rotate", "aug_scale", "aug_elastic")):
        images = random_affine(
            images,
            config["aug_translate"],
            config["aug_rotate"],
            config["aug_scale"],
            gen,
            elastic=config["aug_elastic"],
        )
    if config["aug_stroke"]:
        images = random_stroke(images, config["aug_stroke"], gen)
    if config["aug_erasing"]:
        images = random_erasing(images, config["aug_erasing"], gen)
    return images


def _uniform(n: int, spread: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """n draws from U(-spread, spread)."""
    return (torch.rand(n, generator=gen, device=device) * 2 - 1) * spread


def random_affine(
    images: torch.Tensor,
    translate: float,
    rotate: float,
    scale: float,
    gen: torch.Generator,
    elastic: float = 0.0,
) -> torch.Tensor:
    """Each image rotated, zoomed and moved by its own draw and, with `elastic` > 0, bent by a
    smooth random displacement of up to `elastic` pixels: one resampling for all of it."""
    n, device = len(images), images.device
    angle = _uniform(n, math.radians(rotate), gen, device)
    zoom = 1 + _uniform(n, scale, gen, device)
    shift = torch.stack([_uniform(n, 2 * translate, gen, device) for _ in range(2)], 1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input coordinates
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    if elastic:
        grid = grid + elastic_field(images, elastic, gen)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def elastic_field(
    images: torch.Tensor, pixels: float, gen: torch.Generator, knots: int = 4
) -> torch.Tensor:
    """A smooth random displacement (n, h, w, 2) in grid units, at most `pixels` pixels: noise on
    a coarse `knots` x `knots` lattice, interpolated bicubically (Simard et al.'s elastic
    distortion for handwriting, without the full-size Gaussian blur)."""
    n, _, h, w = images.shape
    coarse = torch.rand(n, 2, knots, knots, generator=gen, device=images.device) * 2 - 1
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    field = field.clamp(-1, 1) * pixels  # bicubic overshoots a little: keep the bound
    units = torch.tensor([2 / w, 2 / h], device=images.device)  # pixels -> grid units, (x, y)
    return (field.permute(0, 2, 3, 1) * units).to(images.dtype)


def random_stroke(images: torch.Tensor, probability: float, gen: torch.Generator) -> torch.Tensor:
    """With `probability`, an image's strokes thinned or thickened (either, equally likely) by a
    random share of one 3x3 grey erosion or dilation. KMNIST's test pages are written with a
    thinner brush than its training pages, and most errors are on the thinnest characters."""
    n, device = len(images), images.device
    thin = torch.rand(n, generator=gen, device=device) < 0.5
    sign = (1 - 2 * thin.to(images.dtype))[:, None, None, None]  # -1: thin, +1: thicken
    # one pooling for both: a grey erosion is the dilation of the negated image, negated back
    target = sign * F.max_pool2d(sign * images, 3, stride=1, padding=1)
    picked = torch.rand(n, generator=gen, device=device) < probability
    share = torch.rand(n, generator=gen, device=device) * picked
    return images.lerp(target, share[:, None, None, None].to(images.dtype))


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


def shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`images` moved down `dy` and right `dx` whole pixels; what comes in is zero (background)."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


def random_shift(images: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by its own whole-pixel offset in [-pixels, pixels]^2: crisp, no blur."""
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pixels,) * 4)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n, 1), generator=gen, device=device)
    rows = (dy + torch.arange(h, device=device))[:, None, :, None]  # n, 1, h, 1
    cols = (dx + torch.arange(w, device=device))[:, None, None, :]  # n, 1, 1, w
    picked = padded.gather(2, rows.expand(-1, padded.shape[1], -1, padded.shape[3]))
    return picked.gather(3, cols.expand(-1, picked.shape[1], h, -1))


def mix(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: dict[str, Any],
    gen: torch.Generator,
    rng: np.random.Generator,
    n_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup, cutmix or neither for this batch, as the config's shares say.

    Returns the images and the targets: `labels` as they are when the batch is not mixed, else
    soft labels (n, n_classes) whose rows sum to 1. The per-batch draws (which one, the weight,
    the box) come from the host generator `rng`, so no device value is read back.
    """
    choice = rng.random()
    use_mixup = config["mixup_alpha"] > 0 and choice < config["mixup_prob"]
    cut_share = config["cutmix_prob"] + (config["mixup_prob"] if config["mixup_alpha"] > 0 else 0)
    use_cutmix = not use_mixup and config["cutmix_alpha"] > 0 and choice < cut_share
    if not (use_mixup or use_cutmix):
        return images, labels
    perm = torch.randperm(len(images), generator=gen, device=images.device)
    if use_mixup:
        lam = float(rng.beta(config["mixup_alpha"], config["mixup_alpha"]))
        images = images.lerp(images[perm], 1 - lam)
    else:
        images, lam = _paste_box(images, perm, float(rng.beta(*[config["cutmix_alpha"]] * 2)), rng)
    onehot = F.one_hot(labels, n_classes).to(images.dtype)
    return images, onehot.lerp(onehot[perm], 1 - lam)


def _paste_box(
    images: torch.Tensor, perm: torch.Tensor, lam: float, rng: np.random.Generator
) -> tuple[torch.Tensor, float]:
    """Cutmix: one box of about (1 - lam) of the area, at a random centre, from the permuted
    batch; returns the images and the share of each image that is still its own."""
    h, w = images.shape[-2:]
    cut = math.sqrt(1 - lam)
    cy, cx = rng.integers(h), rng.integers(w)
    top, bottom = max(cy - round(h * cut / 2), 0), min(cy + round(h * cut / 2), h)
    left, right = max(cx - round(w * cut / 2), 0), min(cx + round(w * cut / 2), w)
    out = images.clone()
    out[..., top:bottom, left:right] = images[perm, :, top:bottom, left:right]
    return out, 1 - (bottom - top) * (right - left) / (h * w)
