"""One epoch of the starter CNN: kmnist-sweep's trainer vs the classic PyTorch loop.

The baseline is the loop a user writes from the PyTorch tutorials: a Dataset that builds a PIL
image per sample and converts it to a tensor (what torchvision's KMNIST + ToTensor do), a
DataLoader with batch 100 and shuffling, the same network and Adam(1e-3), fp32. Both train on
the same 54k-image split and score the same 6k validation images; runs alternate, and the
medians of --repeats runs are reported.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/cnn_epoch.py --repeats 3
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
import torch.nn.functional as F
from machine import describe, headline
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from kmnist.trainer import data as kdata
from kmnist.trainer import train
from kmnist.trainer.models import build_network
from kmnist.trainer.params import resolve

CONFIG = {"model": "cnn", "optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 1}


class PilKmnist(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i], mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)[None]
        return tensor, int(self.labels[i])


def baseline_epoch(d: kdata.Kmnist, train_idx: np.ndarray, val_idx: np.ndarray) -> float:
    torch.manual_seed(0)
    model = build_network(resolve(CONFIG))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(
        PilKmnist(d.train_images[train_idx], d.train_labels[train_idx]),
        batch_size=100,
        shuffle=True,
    )
    val_loader = DataLoader(
        PilKmnist(d.train_images[val_idx], d.train_labels[val_idx]), batch_size=1000
    )
    start = time.perf_counter()
    model.train()
    for x, y in train_loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in val_loader:
            correct += int((model(x).argmax(1) == y).sum())
    return time.perf_counter() - start


class EpochTimer:
    def report(self, epoch: int, metrics: dict) -> bool:
        self.seconds = metrics["epoch_time"]
        return False


def project_epoch(d: kdata.Kmnist, precision: str) -> float:
    timer = EpochTimer()
    train.run({**CONFIG, "precision": precision}, timer, device="cpu", data=d)
    return timer.seconds


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(repeats: int, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    d = kdata.load(download=False)
    train_idx, val_idx = kdata.stratified_split(d.train_labels, 0.1, 0)
    times: dict[str, list[float]] = {"baseline": [], "project_fp32": [], "project_auto": []}
    for _ in range(repeats):
        times["baseline"].append(baseline_epoch(d, train_idx, val_idx))
        times["project_fp32"].append(project_epoch(d, "fp32"))
        times["project_auto"].append(project_epoch(d, "auto"))
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "cnn_epoch",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "load_at_end": os.getloadavg(),
        "seconds": times,
        "median_seconds": medians,
        "speedup_fp32": medians["baseline"] / medians["project_fp32"],
        "speedup_auto": medians["baseline"] / medians["project_auto"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "cnn_epoch.json").write_text(json.dumps(result, indent=2))
    print(
        json.dumps(
            {k: result[k] for k in ("median_seconds", "speedup_fp32", "speedup_auto")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
