"""What a trained model costs: multiply-adds counted exactly, latency measured, in every summary."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from kmnist.trainer import costs, metrics, train
from kmnist.trainer import data as kdata
from kmnist.trainer.models import build_network
from kmnist.trainer.params import resolve

TINY = {"train_size": 600, "val_fraction": 0.02, "epochs": 1, "batch_size": 100}
COSTS = (metrics.PARAMETERS, metrics.MACS, metrics.LATENCY_MS_B1, metrics.LATENCY_MS_B1000)


def starter_macs(l1: int, l2: int, fc1: int) -> int:
    """conv 3x3 1->l1 (26x26 out), conv 3x3 l1->l2 (24x24), [pool to 12x12], dense, dense."""
    return 26 * 26 * l1 * 9 + 24 * 24 * l2 * l1 * 9 + l2 * 12 * 12 * fc1 + fc1 * 10


def resnet_macs(width: int, se_hidden: int) -> int:
    """One stage, growth 2, one block with squeeze-excite: stem at 28x28, the widening conv
    at 28x28 (it precedes the pooling), the block's two convs at 14x14, the gate's 1x1 convs
    on the pooled 1x1 map, the head."""
    w2 = 2 * width
    stem, widen = 28 * 28 * width * 9, 28 * 28 * w2 * width * 9
    block = 2 * 14 * 14 * w2 * w2 * 9
    return stem + widen + block + 2 * w2 * se_hidden + w2 * 10


def knn_macs(n_train: int, pca: int) -> int:
    dim = pca or 28 * 28
    return n_train * dim + (28 * 28 * pca if pca else 0)


def n_train(config: dict) -> int:
    cfg = resolve(config)
    return len(train.make_splits(kdata.load(), cfg, torch.device("cpu")).train_x)


CNN = {"model": "cnn", "l1_size": 4, "l2_size": 8, "fc1_size": 16, **TINY}
RESNET = {"model": "resnet", "width": 4, "stages": 1, "blocks": 1, "se_ratio": 0.5, **TINY}
KNN = {"model": "knn", "k": 3, "train_size": 600, "val_fraction": 0.02}
FAMILIES = {
    "cnn": (CNN, lambda: starter_macs(4, 8, 16)),
    "deep_cnn": (  # two 3x3 convs with padding 1 at 28x28, then global pooling and the head
        {"model": "deep_cnn", "depth": 1, "width": 4, **TINY},
        lambda: 28 * 28 * 4 * 9 + 28 * 28 * 4 * 4 * 9 + 4 * 10,
    ),
    "resnet": (RESNET, lambda: resnet_macs(4, se_hidden=4)),  # max(4, round(8 * 0.5))
    "knn": (KNN, lambda: knn_macs(n_train(KNN), pca=0)),
    "knn_pca": ({**KNN, "pca_components": 20}, lambda: knn_macs(n_train(KNN), pca=20)),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_logs_exact_macs_and_measured_latencies(
    family: str, kmnist_dir: object
) -> None:
    config, expected_macs = FAMILIES[family]
    result = train.run(config, device="cpu")
    assert result.status == "completed", result.reason
    summary = result.summary
    assert list(summary) == [*metrics.SUMMARY]  # every name applies to kNN too
    assert summary[metrics.MACS] == expected_macs()
    for name in (metrics.LATENCY_MS_B1, metrics.LATENCY_MS_B1000, metrics.WALL_TIME):
        assert math.isfinite(summary[name]) and summary[name] > 0, name
    if config["model"] == "knn":
        assert summary[metrics.PARAMETERS] == 0
    assert set(COSTS) <= set(metrics.OBJECTIVES)  # a sweep may trade accuracy against them


def test_the_starter_cnn_at_its_default_widths_counts_twelve_million_macs() -> None:
    model = build_network(resolve({"model": "cnn"}))
    assert costs.network_macs(model) == starter_macs(32, 64, 128) == 11_992_448
    assert model.training  # counted in eval mode, given back as it came


def test_grouped_strided_convs_count_their_output_and_kernel_only() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, stride=2),  # 12x12 out
        nn.BatchNorm2d(6),  # not counted, nor the activation and pooling
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=3),  # 12x12 out, 2 input channels per group
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 7),
    )
    assert costs.network_macs(model) == 12 * 12 * 6 * 25 + 12 * 12 * 6 * 2 * 9 + 6 * 7
    assert not any(module._forward_hooks for module in model.modules())  # hooks removed


def test_timing_is_bounded_in_calls_and_seconds() -> None:
    calls: list[int] = []

    def predict(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x

    images = torch.zeros((costs.LARGE_BATCH, 1, 28, 28), dtype=torch.uint8)
    ms = costs.latencies(predict, images, torch.device("cpu"))
    assert set(ms) == {metrics.LATENCY_MS_B1, metrics.LATENCY_MS_B1000}
    most = {batch: repeats + 1 for batch, repeats, _ in costs.TIMINGS.values()}  # + warm-up
    assert calls.count(1) == most[1] and calls.count(costs.LARGE_BATCH) == most[costs.LARGE_BATCH]

    def slow(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        time.sleep(0.3)  # one call is past the large batch's budget: no second timed call
        return x

    calls.clear()
    (_, _, budget_s) = costs.TIMINGS[metrics.LATENCY_MS_B1000]
    assert budget_s < 0.3
    per_image = costs._ms_per_image(slow, images, torch.device("cpu"), 3, budget_s)
    assert calls == [costs.LARGE_BATCH] * 2  # the warm-up and one timed call
    assert per_image >= 0.3 * 1000 / costs.LARGE_BATCH


def test_wall_time_ends_before_the_latency_measurement(
    monkeypatch: pytest.MonkeyPatch, kmnist_dir: object
) -> None:
    called_at: list[float] = []

    def slow_latencies(*args: object) -> dict[str, float]:
        called_at.append(time.perf_counter())
        time.sleep(1.0)
        return dict.fromkeys((metrics.LATENCY_MS_B1, metrics.LATENCY_MS_B1000), 1.0)

    monkeypatch.setattr(costs, "latencies", slow_latencies)
    data = kdata.load()
    before = time.perf_counter()
    result = train.run(KNN, device="cpu", data=data)
    assert result.status == "completed", result.reason
    assert result.summary[metrics.WALL_TIME] <= called_at[0] - before
