"""kNN on full KMNIST (60k -> 10k test), k=4, distance-weighted: kmnist-sweep vs scikit-learn.

The baseline is what a user would otherwise run: `KNeighborsClassifier(n_neighbors=4,
weights="distance", n_jobs=-1)` on the flattened uint8 images (brute force is what its `auto`
picks for 784 features). Both fit on the 60k training images and predict the 10k test images;
runs alternate and the medians of --repeats runs are reported, with both accuracies.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/knn.py --repeats 5
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from kmnist.trainer import data as kdata
from kmnist.trainer.models import KNNClassifier
from kmnist.trainer.params import resolve


def sklearn_knn(d: kdata.Kmnist) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    model = KNeighborsClassifier(n_neighbors=4, weights="distance", n_jobs=-1)
    model.fit(d.train_images.reshape(len(d.train_images), -1), d.train_labels)
    predicted = model.predict(d.test_images.reshape(len(d.test_images), -1))
    return time.perf_counter() - start, predicted


def project_knn(d: kdata.Kmnist) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    config = resolve({"model": "knn", "k": 4, "weights": "distance"})
    model = KNNClassifier(config).fit(
        torch.from_numpy(d.train_images), torch.from_numpy(d.train_labels)
    )
    predicted = model.predict(torch.from_numpy(d.test_images)).numpy()
    return time.perf_counter() - start, predicted


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(repeats: int, out: Path) -> None:
    d = kdata.load(download=False)
    times: dict[str, list[float]] = {"sklearn": [], "project": []}
    for _ in range(repeats):
        seconds, sk_pred = sklearn_knn(d)
        times["sklearn"].append(seconds)
        seconds, our_pred = project_knn(d)
        times["project"].append(seconds)
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "knn",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}",
        "seconds": times,
        "median_seconds": medians,
        "speedup": medians["sklearn"] / medians["project"],
        "accuracy": {
            "sklearn": float((sk_pred == d.test_labels).mean()),
            "project": float((our_pred == d.test_labels).mean()),
        },
        "prediction_agreement": float((sk_pred == our_pred).mean()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn.json").write_text(json.dumps(result, indent=2))
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("median_seconds", "speedup", "accuracy", "prediction_agreement")
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
