"""Seconds per epoch of each network family, and the share of the CPU's matmul peak they reach.

For the starter CNN, `deep_cnn` (the issue's depth 3, width 32) and the README's residual net,
one epoch of the trainer (54k training images, 6k validation images scored, `precision=auto`)
runs in a fresh process, --repeats times, alternating. Their multiply-adds are counted from the
network itself (every convolution and linear layer, by forward hooks); an epoch is the forward
pass over the 54k, its two backward products (input and weight gradients, each as many
multiply-adds as the forward), and the forward passes of validation (one per TTA view). The
rate is that over the median epoch, beside the bf16 (or, where the CPU has no native bf16,
fp32) matmul peak measured in the same run: a 2048-cube product.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/network_epoch.py --repeats 3
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import click
import torch
from epoch_timing import in_fresh_process, trainer_epoch_seconds
from machine import describe, headline
from torch import nn

from kmnist.trainer import data as kdata
from kmnist.trainer import train
from kmnist.trainer.models import build_network
from kmnist.trainer.params import resolve

NETWORKS: dict[str, dict[str, Any]] = {
    "cnn": {"model": "cnn", "optimizer": "adam", "lr": 1e-3, "batch_size": 100},
    "deep_cnn": {"model": "deep_cnn", "depth": 3, "width": 32, "batch_size": 128},
    "resnet": {  # the README's recipe
        **{"model": "resnet", "width": 24, "stages": 3, "blocks": 1, "dropout": 0.1},
        **{"optimizer": "sgd", "lr": 0.2, "nesterov": True, "schedule": "onecycle"},
        **{"batch_size": 256, "label_smoothing": 0.1, "aug_shift": 2, "ema": 0.995, "tta": 4},
    },
}
TRAIN_IMAGES, VAL_IMAGES = 54_000, 6_000


def macs_per_image(config: dict[str, Any]) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and linear layers."""
    model, total = build_network(config), [0]

    def count(module: nn.Module, _: object, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += (
                out.numel() * module.in_channels // module.groups * module.weight[0, 0].numel()
            )
        elif isinstance(module, nn.Linear):
            total[0] += out.numel() * module.in_features

    for module in model.modules():
        module.register_forward_hook(count)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    return total[0]


def epoch_flops(config: dict[str, Any]) -> float:
    views = 1 + config["tta"]
    return 2.0 * macs_per_image(config) * (3 * TRAIN_IMAGES + views * VAL_IMAGES)


def epoch_seconds(name: str) -> float:
    config = {**NETWORKS[name], "precision": "auto"}
    return trainer_epoch_seconds(config, kdata.load(download=False))


def matmul_peak() -> tuple[str, float]:
    """GFLOP/s of a 2048-cube matmul in the dtype `precision=auto` trains in here."""
    dtype = torch.bfloat16 if train.use_bf16("auto", torch.device("cpu")) else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return str(dtype).removeprefix("torch."), 2 * 2048**3 / statistics.median(times[2:]) / 1e9


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
@click.option("--one", type=click.Choice(list(NETWORKS)), hidden=True)  # a child's epoch
def main(repeats: int, out: Path, one: str | None) -> None:
    if one:
        print(epoch_seconds(one))
        return
    machine = describe()
    print(headline(machine), flush=True)
    dtype, peak = matmul_peak()
    print(f"matmul peak: {peak:.0f} GFLOP/s ({dtype})", flush=True)
    times: dict[str, list[float]] = {name: [] for name in NETWORKS}
    for _ in range(repeats):
        for name in NETWORKS:
            times[name].append(in_fresh_process(__file__, name))
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    rows = {}
    for name, seconds in times.items():
        config = resolve(NETWORKS[name])
        flops, median = epoch_flops(config), statistics.median(seconds)
        rows[name] = {
            "seconds": seconds,
            "median_seconds": median,
            "mflop_per_image_forward": 2 * macs_per_image(config) / 1e6,
            "tflop_per_epoch": flops / 1e12,
            "gflops": flops / median / 1e9,
            "share_of_matmul_peak": flops / median / 1e9 / peak,
        }
        print(
            f"{name}: {median:.1f} s/epoch, {flops / 1e12:.2f} TFLOP, "
            f"{flops / median / 1e9:.0f} GFLOP/s = {rows[name]['share_of_matmul_peak']:.0%} "
            f"of the {dtype} matmul peak",
            flush=True,
        )
    result = {
        "benchmark": "network_epoch",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "matmul_peak_gflops": {dtype: peak},
        "networks": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "network_epoch.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
