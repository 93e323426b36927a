"""Per-trial overhead of an agent, training excluded: pull a config, report epochs, finish.

Four agent processes work through one sweep at once, each trial reporting 3 epochs of a
trivial objective, on (a) the embedded journal file, (b) Optuna's SQLite storage, and (c) the
baseline of `wandb agent` with a `program`: a fresh Python process per trial that imports the
trainer and loads the data before it can train. Medians of the per-trial times seen by the
agents.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/agent_overhead.py
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

SWEEP = """
method: random
metric: {name: val/accuracy, goal: maximize}
run_cap: RUN_CAP
parameters:
  model: {value: knn}
  k: {min: 1, max: 20}
  weights: {values: [uniform, distance]}
"""
AGENTS = 4
FRESH_PROCESS = (
    "import torch, kmnist.trainer.train; from kmnist.trainer import data; data.load(download=False)"
)


def _agent(sweep_id: str, url: str, out: mp.Queue) -> None:
    from kmnist.backends import SweepDone
    from kmnist.backends.optuna.backend import OptunaSweep

    sweep = OptunaSweep(sweep_id, url)
    times = []
    while True:
        start = time.perf_counter()
        try:
            ticket = sweep.next_trial()
        except SweepDone:
            break
        value = 1.0 / (1 + ticket.config["k"])
        for epoch in (1, 2, 3):
            sweep.report(ticket, epoch, {"val/accuracy": value})
        sweep.finish(ticket, "completed", {"val/accuracy": value}, [])
        times.append(time.perf_counter() - start)
    out.put(times)


def engine_times(url: str, trials_per_agent: int) -> list[float]:
    from kmnist.backends.optuna.backend import create_sweep
    from kmnist.sweep.source import parse
    from kmnist.sweep.validate import check_source

    text = SWEEP.replace("RUN_CAP", str(AGENTS * trials_per_agent))
    spec, _ = check_source(parse(text))
    sweep_id = create_sweep(text, spec, "overhead", url)
    return _in_agents(_agent, sweep_id, url)


def _in_agents(target: Callable[..., None], *args: object) -> list[float]:
    """Run `target(*args, queue)` in AGENTS processes at once; all the times they report."""
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=target, args=(*args, queue)) for _ in range(AGENTS)]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in queue.get()]
    for p in procs:
        p.join()
    return times


def _fresh_worker(n: int, out: mp.Queue) -> None:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", FRESH_PROCESS], check=True)
        times.append(time.perf_counter() - start)
    out.put(times)


def fresh_process_times(per_agent: int) -> list[float]:
    return _in_agents(_fresh_worker, per_agent)


@click.command()
@click.option("--trials", default=50, show_default=True, help="Trials per agent (engines).")
@click.option("--fresh", default=5, show_default=True, help="Trials per agent (fresh process).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(trials: int, fresh: int, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "journal file (default)": engine_times(f"{tmp}/sweeps.journal", trials),
            "sqlite": engine_times(f"sqlite:///{tmp}/sweeps.db", trials),
            "fresh process per trial": fresh_process_times(fresh),
        }
    medians = {k: statistics.median(v) * 1000 for k, v in results.items()}
    base = medians["journal file (default)"]
    summary = {
        "benchmark": "agent_overhead",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {mp.cpu_count()} cpus",
        "agents": AGENTS,
        "median_ms_per_trial": medians,
        "ratio_vs_journal": {k: v / base for k, v in medians.items()},
        "trials": {k: len(v) for k, v in results.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_overhead.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
