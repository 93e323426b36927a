"""One epoch of the starter CNN: kmnist-sweep's trainer vs the classic PyTorch loop.

The baseline is the loop a user writes from the PyTorch tutorials: a Dataset that builds a PIL
image per sample and converts it to a tensor (what torchvision's KMNIST + ToTensor do), a
DataLoader with batch 100 and shuffling, the starter network written in plain PyTorch (the
Keras starter's layer order, `nn.Dropout`, the default NCHW layout) and Adam(1e-3), fp32. A
second baseline runs the same loop on the project's own build of that network (ReLU after the
pooling, its dropout mask, channels-last weights: the same function, the same parameters), to
tell the network's share of the speed-up from the data path's. All train on
the same 54k-image split and score the same 6k validation images; runs alternate, and the
medians of --repeats runs are reported. Each epoch runs in a fresh Python process, as a user's
script would: the trainer sets glibc's allocator thresholds for its whole process (which then
speed up a baseline run after it), and a process that has run the baseline's DataLoader epochs
runs the trainer's about 1 s slower (Xeon, 2026-12-02). `--same-process` measures the old way.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/cnn_epoch.py --repeats 3
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from epoch_timing import in_fresh_process, trainer_epoch_seconds
from machine import describe, headline
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kmnist.trainer import data as kdata
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


def tutorial_cnn(config: dict) -> nn.Module:
    """The starter network as a user writes it from the Keras example, in plain PyTorch."""
    return nn.Sequential(
        nn.Conv2d(1, config["l1_size"], 3), nn.ReLU(),
        nn.Conv2d(config["l1_size"], config["l2_size"], 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(config["dropout_1"]), nn.Flatten(),
        nn.Linear(config["l2_size"] * 12 * 12, config["fc1_size"]), nn.ReLU(),
        nn.Dropout(config["dropout_2"]), nn.Linear(config["fc1_size"], 10),
    )  # fmt: skip


def baseline_epoch(
    d: kdata.Kmnist, train_idx: np.ndarray, val_idx: np.ndarray, network: str
) -> float:
    torch.manual_seed(0)
    config = resolve(CONFIG)
    model = tutorial_cnn(config) if network == "tutorial" else build_network(config)
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


VARIANTS = ("baseline", "baseline_project_net", "project_fp32", "project_auto")


def epoch_seconds(variant: str) -> float:
    """One epoch of `variant`, timed in this process (the data load not counted)."""
    d = kdata.load(download=False)
    train_idx, val_idx = kdata.stratified_split(d.train_labels, 0.1, 0)
    if variant.startswith("baseline"):
        network = "project" if variant == "baseline_project_net" else "tutorial"
        return baseline_epoch(d, train_idx, val_idx, network)
    return trainer_epoch_seconds({**CONFIG, "precision": variant.removeprefix("project_")}, d)


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
@click.option("--same-process", is_flag=True, help="Run every epoch in this one process.")
@click.option("--one", type=click.Choice(VARIANTS), hidden=True)  # a child's single epoch
def main(repeats: int, out: Path, same_process: bool, one: str | None) -> None:
    if one:
        print(epoch_seconds(one))
        return
    machine = describe()
    print(headline(machine), flush=True)
    measure = epoch_seconds if same_process else functools.partial(in_fresh_process, __file__)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            times[variant].append(measure(variant))
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "cnn_epoch",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "processes": "one" if same_process else "a fresh one per epoch",
        "load_at_end": os.getloadavg(),
        "seconds": times,
        "median_seconds": medians,
        "speedup_fp32": medians["baseline"] / medians["project_fp32"],
        "speedup_auto": medians["baseline"] / medians["project_auto"],
        "speedup_auto_vs_project_net_loop": medians["baseline_project_net"]
        / medians["project_auto"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "cnn_epoch.json").write_text(json.dumps(result, indent=2))
    shown = {k: v for k, v in result.items() if k == "median_seconds" or "speedup" in k}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
