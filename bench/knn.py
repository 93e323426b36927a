"""kNN on full KMNIST (60k -> 10k test), k=4, distance-weighted: kmnist-sweep vs scikit-learn.

The baseline is what a user would otherwise run: `KNeighborsClassifier(n_neighbors=4,
weights="distance", n_jobs=-1)` on the flattened uint8 images (brute force is what its `auto`
picks for 784 features). Both fit on the 60k training images and predict the 10k test images.
The project runs as an agent meets it: the kernel is chosen (timed) afresh in every run; each
exact kernel this machine runs is also timed on its own. Runs alternate; medians of --repeats
runs are reported, with accuracies and agreement with scikit-learn's predictions.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/knn.py --repeats 5
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch
from machine import describe, headline
from sklearn.neighbors import KNeighborsClassifier

from kmnist.trainer import data as kdata
from kmnist.trainer.models import KNNClassifier, knn_kernels
from kmnist.trainer.params import resolve


def sklearn_knn(d: kdata.Kmnist) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    model = KNeighborsClassifier(n_neighbors=4, weights="distance", n_jobs=-1)
    model.fit(d.train_images.reshape(len(d.train_images), -1), d.train_labels)
    predicted = model.predict(d.test_images.reshape(len(d.test_images), -1))
    return time.perf_counter() - start, predicted


def project_knn(d: kdata.Kmnist, kernel: str | None) -> tuple[float, np.ndarray, str]:
    knn_kernels.forget_choice()
    start = time.perf_counter()
    config = resolve({"model": "knn", "k": 4, "weights": "distance"})
    model = KNNClassifier(config, kernel=kernel).fit(
        torch.from_numpy(d.train_images), torch.from_numpy(d.train_labels)
    )
    predicted = model.predict(torch.from_numpy(d.test_images)).numpy()
    return time.perf_counter() - start, predicted, model.kernel


def _worth_a_full_run(d: kdata.Kmnist) -> list[str]:
    """The kernels that run natively here, less any a cheap screen finds far slower than the
    best (a reference path: a full run of it would take minutes), printed with their times."""
    kernels = knn_kernels.available(torch.device("cpu"))

    def shifted(images: np.ndarray) -> torch.Tensor:  # as KNNClassifier feeds its kernels
        return (torch.from_numpy(images).reshape(len(images), -1) ^ 128).view(torch.int8)

    rows, queries = shifted(d.train_images[:256]), shifted(d.test_images[:32])
    screen = knn_kernels.timings(kernels, queries, rows, rows.float().square().sum(1) / 2, 3)
    best = min(screen.values())
    kept = [k for k in kernels if screen[k] <= knn_kernels.SCREEN_MARGIN * best]
    print("screen (32 x 256):", {k: f"{v * 1e3:.2f} ms" for k, v in screen.items()}, "->", kept)
    return kept


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(repeats: int, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    d = kdata.load(download=False)
    kernels = _worth_a_full_run(d)
    names = ["sklearn", "project", *kernels]
    times: dict[str, list[float]] = {name: [] for name in names}
    predictions: dict[str, np.ndarray] = {}
    chosen: list[str] = []
    for _ in range(repeats):
        seconds, predictions["sklearn"] = sklearn_knn(d)
        times["sklearn"].append(seconds)
        for name in names[1:]:
            seconds, predictions[name], used = project_knn(d, None if name == "project" else name)
            times[name].append(seconds)
            if name == "project":
                chosen.append(used)
        print({k: round(v[-1], 2) for k, v in times.items()}, f"chose {chosen[-1]}", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    sk = predictions["sklearn"]
    result = {
        "benchmark": "knn",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "load_at_end": os.getloadavg(),
        "seconds": times,
        "median_seconds": medians,
        "speedup": medians["sklearn"] / medians["project"],
        "speedup_per_kernel": {k: medians["sklearn"] / medians[k] for k in kernels},
        "kernel_chosen": chosen,
        "accuracy": {k: float((p == d.test_labels).mean()) for k, p in predictions.items()},
        "identical_to_sklearn": {k: bool((p == sk).all()) for k, p in predictions.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn.json").write_text(json.dumps(result, indent=2))
    keys = ("median_seconds", "speedup", "speedup_per_kernel", "kernel_chosen", "accuracy")
    print(json.dumps({k: result[k] for k in (*keys, "identical_to_sklearn")}, indent=2))


if __name__ == "__main__":
    main()
