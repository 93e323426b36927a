"""The fixed CPU recipe (README, "Training one configuration"): one `kmnist-sweep train` run.

Runs the project's own command with the recipe's parameters, as a user would, and records the
machine (lscpu's model name, cores, load before and after), the command, the per-epoch
validation accuracy, the test accuracy (scored once, at the end) and the wall time in
bench/results/recipe-<time>.json. Extra `--name=value` arguments after `--` override the
recipe (for profiling, e.g. `-- --epochs=1`).

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/recipe.py [--seed 0] [-- --epochs=1]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
from machine import describe, headline, save_record

# The recipe: a ResNet-9-like pre-activation net, SGD-Nesterov with one-cycle, whole-pixel
# shifts, label smoothing, weight EMA for evaluation, and 1-pixel-shift TTA.
RECIPE = [
    "--model=resnet",
    "--width=24",
    "--stages=3",
    "--blocks=1",
    "--dropout=0.1",
    "--optimizer=sgd",
    "--lr=0.2",
    "--momentum=0.9",
    "--nesterov=True",
    "--weight_decay=5e-4",
    "--schedule=onecycle",
    "--batch_size=256",
    "--epochs=12",
    "--label_smoothing=0.1",
    "--aug_shift=2",
    "--ema=0.995",
    "--tta=4",
]


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def main(seed: int, out: Path, overrides: tuple[str, ...]) -> None:
    command = ["kmnist-sweep", "train", "--json", "--device=cpu", *RECIPE, f"--seed={seed}"]
    command += list(overrides)
    machine = describe()
    print(f"{headline(machine)}\ncommand: {' '.join(command)}", flush=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    run = json.loads(proc.stdout)
    summary = run["summary"]
    record = {
        "benchmark": "recipe",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "command": " ".join(command),
        "wall_seconds": wall,
        "train_seconds": sum(epoch["epoch_time"] for epoch in run["history"]),
        "summary": summary,
        "val_accuracy_by_epoch": [epoch["val/accuracy"] for epoch in run["history"]],
        "epoch_seconds": [epoch["epoch_time"] for epoch in run["history"]],
    }
    path = save_record(record, out)
    print(
        f"val/accuracy {summary['val/accuracy']:.4f}  test/accuracy {summary['test/accuracy']:.4f}"
        f"  wall {wall / 60:.1f} min (training + validation {record['train_seconds'] / 60:.1f})"
        f"  load {load_before[0]:.1f} -> {record['load_average_after'][0]:.1f}  -> {path}"
    )


if __name__ == "__main__":
    main()
