"""What a trained model costs to use: multiply-adds counted, latency measured.

`train.py` calls these once at the end of a trial; the names and what they count are in
`metrics.py`. Timing is cheap by construction: a warm-up call, then at most `repeats` timed
calls, fewer once `budget_s` seconds of timed calls have run (always at least one).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from kmnist.trainer import metrics as M
from kmnist.trainer.models import KNNClassifier

Predict = Callable[[torch.Tensor], torch.Tensor]  # uint8 images (n, 1, 28, 28) -> (n, classes)
IMAGE_SHAPE = (1, 1, 28, 28)
LARGE_BATCH = 1000  # the batch of LATENCY_MS_B1000
# (batch, timed calls at most, seconds of timed calls after which no new one starts)
TIMINGS = {M.LATENCY_MS_B1: (1, 25, 0.1), M.LATENCY_MS_B1000: (LARGE_BATCH, 3, 0.25)}


def network_macs(model: nn.Module) -> int:
    """Multiply-adds of one forward pass of one image through `model`'s convolutions and
    linear layers, counted by forward hooks on a zero image."""
    counts: list[int] = []

    def count(layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        counts.append(_layer_macs(layer, out))

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    hooks = [layer.register_forward_hook(count) for layer in layers]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(IMAGE_SHAPE, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return sum(counts)


def _layer_macs(layer: nn.Module, out: torch.Tensor) -> int:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return out.numel() * layer.in_channels // layer.groups * kh * kw
    assert isinstance(layer, nn.Linear)
    return out.numel() * layer.in_features


def knn_macs(knn: KNNClassifier) -> int:
    """Per query: one multiply-add per coordinate of every stored training image, and the
    query's PCA projection when there is one."""
    n_train, dim = knn.train.shape
    projection = knn.components.numel() if knn.components is not None else 0
    return n_train * dim + projection


def latencies(predict: Predict, images: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Milliseconds per image of `predict` on one image, and on LARGE_BATCH images at once
    (`images` holds at least that many, on `device`)."""
    return {
        name: _ms_per_image(predict, images[:batch], device, repeats, budget_s)
        for name, (batch, repeats, budget_s) in TIMINGS.items()
    }


def _ms_per_image(
    predict: Predict, batch: torch.Tensor, device: torch.device, repeats: int, budget_s: float
) -> float:
    with torch.inference_mode():
        _timed(predict, batch, device)  # warm-up: allocations, kernel choice, caches
        times = [_timed(predict, batch, device)]
        while len(times) < repeats and sum(times) < budget_s:
            times.append(_timed(predict, batch, device))
    return statistics.median(times) * 1000 / len(batch)


def _timed(predict: Predict, batch: torch.Tensor, device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    predict(batch)
    _synchronize(device)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
