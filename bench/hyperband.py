"""What W&B-rule hyperband saves: the same CNN sweep with and without early termination.

Both sweeps draw the same configs (random search, same sampler seed, one agent in-process, so
the draws do not depend on timing), run the same number of trials, and differ only in
`early_terminate`. Reported: epochs trained, wall time, and the best val/accuracy of each.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/hyperband.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click

SWEEP = """
method: random
metric: {name: val/accuracy, goal: maximize}
run_cap: RUN_CAP
EARLY
parameters:
  model: {value: cnn}
  epochs: {value: 9}
  train_size: {value: 4000}
  val_fraction: {value: 0.05}
  lr: {distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-2}
  optimizer: {values: [adam, sgd, adadelta]}
  batch_size: {values: [32, 64, 128]}
  l1_size: {values: [16, 32]}
  fc1_size: {values: [64, 128]}
  dropout_2: {min: 0.1, max: 0.6}
"""
HYPERBAND = "early_terminate: {type: hyperband, min_iter: 1, eta: 3}"


def run_sweep(early: str, trials: int, url: str) -> dict:
    from kmnist.agent.loop import Agent
    from kmnist.backends.optuna.backend import OptunaSweep, create_sweep
    from kmnist.backends.optuna.reading import OptunaSweepControl
    from kmnist.sweep.source import parse
    from kmnist.sweep.validate import check_source

    text = SWEEP.replace("RUN_CAP", str(trials)).replace("EARLY", early)
    spec, problems = check_source(parse(text))
    assert spec is not None, problems
    sweep_id = create_sweep(text, spec, "hyperband-bench", url)
    start = time.perf_counter()
    Agent(OptunaSweep(sweep_id, url, seed=0), device="cpu").run()
    seconds = time.perf_counter() - start
    records = OptunaSweepControl(sweep_id, url).trials()
    return {
        "trials": len(records),
        "pruned": sum(r.state == "pruned" for r in records),
        "epochs": sum(r.epochs for r in records),
        "best_val_accuracy": max(r.value for r in records if r.value is not None),
        "seconds": seconds,
        "configs": [r.config for r in sorted(records, key=lambda r: r.number)],
    }


@click.command()
@click.option("--trials", default=12, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(trials: int, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        full = run_sweep("", trials, f"{tmp}/full.journal")
        pruned = run_sweep(HYPERBAND, trials, f"{tmp}/hyperband.journal")
    assert full["configs"] == pruned["configs"], "both sweeps must draw the same configs"
    result = {
        "benchmark": "hyperband",
        "date": time.strftime("%Y-%m-%d"),
        "no_early_termination": {k: v for k, v in full.items() if k != "configs"},
        "hyperband": {k: v for k, v in pruned.items() if k != "configs"},
        "epochs_saved": 1 - pruned["epochs"] / full["epochs"],
        "time_ratio": full["seconds"] / pruned["seconds"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "hyperband.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
