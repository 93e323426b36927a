"""Offline bayes + hyperband, W&B's way vs the engine before: the best found for the same budget.

Both sweeps run the same file (a small CNN on real KMNIST subsets: 1,000 training images, 1,800
for validation; Bayesian search over lr, optimiser, batch size and dropout; W&B's hyperband at
epochs 1, 3, 9), the same run_cap, the same sampler seed per repeat, one agent in-process. They
differ only in what the sampler learns:

- before: Optuna's GPSampler as the engine used it until this change: 10 random trials first,
  told each completed trial's last-epoch value, blind to hyperband-stopped and failed trials;
- now: `WandbBayesSampler` (the default): W&B's 2 random trials, every finished or stopped
  trial scored by its best epoch, failures imputed as W&B's engine does.

Reported per variant (medians over repeats): the best val/accuracy any trial reached, epochs
trained, wall time; and for the W&B way also the best it had reached once it had trained as
many epochs as the engine before did in that repeat. The objective is real training on KMNIST
subsets, not a surrogate.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/bayes_fidelity.py --repeats 5
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

SWEEP = """
method: bayes
metric: {name: val/accuracy, goal: maximize}
run_cap: RUN_CAP
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
parameters:
  model: {value: cnn}
  epochs: {value: 9}
  train_size: {value: 1000}
  val_fraction: {value: 0.03}
  l1_size: {value: 8}
  l2_size: {value: 16}
  fc1_size: {value: 32}
  lr: {distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-1}
  optimizer: {values: [adam, sgd]}
  batch_size: {values: [64, 128, 256]}
  dropout_2: {min: 0.0, max: 0.6}
"""


def sweep_class(variant: str) -> type:
    from optuna.samplers import GPSampler

    from kmnist.backends.optuna.backend import OptunaSweep

    class Before(OptunaSweep):
        """The engine as it was: plain GPSampler (10 startup trials), told the last epoch."""

        def __init__(self, sweep_id: str, url: str, seed: int) -> None:
            super().__init__(sweep_id, url, seed)
            self.study.sampler = GPSampler(seed=seed)  # on the study itself: no W&B view

        def score(self, summary: Mapping[str, Any], history: list) -> float | None:
            return summary.get("val/accuracy")

    return Before if variant == "before" else OptunaSweep


def run_sweep(variant: str, seed: int, trials: int, url: str, data: Any) -> dict[str, Any]:
    from kmnist.agent.loop import Agent
    from kmnist.backends.optuna.backend import create_sweep
    from kmnist.backends.optuna.reading import OptunaSweepControl
    from kmnist.sweep.source import parse
    from kmnist.sweep.validate import check_source

    text = SWEEP.replace("RUN_CAP", str(trials))
    spec, problems = check_source(parse(text))
    assert spec is not None, problems
    sweep_id = create_sweep(text, spec, f"bayes-{variant}-{seed}", url)
    sweep = sweep_class(variant)(sweep_id, url, seed)
    start = time.perf_counter()
    Agent(sweep, device="cpu", data=data).run()
    seconds = time.perf_counter() - start
    records = OptunaSweepControl(sweep_id, url).trials()
    curve = best_by_epochs(sweep)
    return {
        "best_val_accuracy": curve[-1][1],
        "epochs": sum(r.epochs for r in records),
        "completed": sum(r.state == "completed" for r in records),
        "pruned": sum(r.state == "pruned" for r in records),
        "seconds": round(seconds, 1),
        "curve": curve,
    }


def best_by_epochs(sweep: Any) -> list[tuple[int, float]]:
    """(epochs trained so far, best val/accuracy reached so far) after each trial, in order.

    The best is over every epoch of every trial: what the user gets to keep.
    """
    curve, epochs, best = [], 0, 0.0
    for trial in sorted(sweep.study.get_trials(deepcopy=False), key=lambda t: t.number):
        history = [e["val/accuracy"] for e in trial.user_attrs.get("history", [])]
        epochs += len(history)
        best = max([best, *history])
        curve.append((epochs, best))
    return curve


def best_within(curve: list[list[float]], epochs: float) -> float:
    """The best reached once no more than `epochs` epochs were trained."""
    return max((best for spent, best in curve if spent <= epochs), default=0.0)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


@click.command()
@click.option("--repeats", default=5, show_default=True, help="Seeds 0..N-1, both variants.")
@click.option("--trials", default=16, show_default=True, help="run_cap of each sweep.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(repeats: int, trials: int, out: Path) -> None:
    import torch

    from kmnist.trainer import data as kdata

    # One thread: on a shared CPU two intra-op threads wait on each other (5x slower here).
    torch.set_num_threads(1)
    dataset = kdata.load()
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(repeats):
            for variant in ("before", "now"):  # alternating: the machine's load hits both
                found = run_sweep(variant, seed, trials, f"{tmp}/{variant}.journal", dataset)
                runs[variant].append(found)
                shown = {k: v for k, v in found.items() if k != "curve"}
                print(variant, seed, json.dumps(shown), flush=True)
    # The same epochs too: the W&B way, stopped once it has trained as many epochs as before.
    for before, now in zip(runs["before"], runs["now"], strict=True):
        now["best_within_before_epochs"] = best_within(now["curve"], before["epochs"])
    result = {
        "benchmark": "bayes_fidelity",
        "date": time.strftime("%Y-%m-%d"),
        "cpu": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "torch_threads": 1,
        "repeats": repeats,
        "run_cap": trials,
        "median": {v: _medians(found) for v, found in runs.items()},
        "wins": sum(
            n["best_val_accuracy"] > b["best_val_accuracy"]
            for b, n in zip(runs["before"], runs["now"], strict=True)
        ),
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bayes_fidelity.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


def _medians(found: list[dict[str, Any]]) -> dict[str, float]:
    keys = [key for key in found[0] if key != "curve"]
    return {key: statistics.median(f[key] for f in found) for key in keys}


if __name__ == "__main__":
    main()
