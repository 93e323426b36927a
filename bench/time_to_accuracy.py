"""Wall time until a sweep first reaches a validation accuracy: the seed's way vs this project's.

(a) What the seed benchmark's users did: random search over the starter CNN, one fresh process
    per run (as `wandb agent` starts the sweep's `program`), every run to its last epoch. Each
    run is `kmnist-sweep train --json` in a new interpreter; the moment a run first reached the
    target is its start + its wall time - the epochs after the one that reached it (the test
    scoring and the exit, after the last epoch, are counted against the baseline: about a
    second per run).
(b) This project's best sweep: `kmnist-sweep run sweeps/record_cpu.yaml` (bayes + hyperband,
    the fast residual trainer, trials in-process), its journal polled every --poll seconds for
    the best intermediate validation accuracy of any trial.

Each side gets --budget minutes; a side that does not reach the target within it is recorded as
"> budget", and the ratio as a lower bound. Results (with the CPU model) land in
bench/results/time_to_accuracy-<time>.json.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/time_to_accuracy.py [--budget 20]
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import click
import optuna
from machine import describe, headline, save_record

SWEEP = Path(__file__).resolve().parent.parent / "sweeps" / "record_cpu.yaml"


def starter_config(rng: random.Random) -> dict[str, object]:
    """One random draw over the starter CNN's knobs, as the seed's random sweep drew them."""
    return {
        "model": "cnn",
        "epochs": 12,
        "optimizer": rng.choice(["adam", "adadelta", "sgd"]),
        "lr": math.exp(rng.uniform(math.log(1e-4), math.log(1e-1))),
        "batch_size": rng.choice([64, 128, 256]),
        "dropout_1": rng.uniform(0.1, 0.5),
        "dropout_2": rng.uniform(0.1, 0.5),
        "fc1_size": rng.choice([64, 128, 256]),
    }


def baseline(target: float, budget_s: float, seed: int) -> dict:
    """Fresh-process random search until a run reaches `target` or the budget ends."""
    rng, runs, start = random.Random(seed), [], time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget_s:
        config = starter_config(rng)
        command = ["kmnist-sweep", "train", "--json", "--device=cpu"]
        command += [f"--{name}={value}" for name, value in config.items()]
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=budget_s - elapsed, check=False
            )
        except subprocess.TimeoutExpired:
            break
        wall = time.perf_counter() - start - elapsed
        history = json.loads(proc.stdout)["history"] if proc.returncode == 0 else []
        runs.append({"config": config, "wall": wall, "val": [h["val/accuracy"] for h in history]})
        reached = _reached_at(history, target)
        if reached is not None:
            epochs_after = sum(h["epoch_time"] for h in history[reached + 1 :])
            return {"seconds": elapsed + wall - epochs_after, "runs": runs}
    return {"seconds": None, "runs": runs}


def _reached_at(history: list[dict], target: float) -> int | None:
    return next((i for i, h in enumerate(history) if h["val/accuracy"] >= target), None)


def project(target: float, budget_s: float, poll: float) -> dict:
    """`kmnist-sweep run` on its own journal, stopped once any trial reports `target`."""
    with tempfile.TemporaryDirectory() as folder:
        journal = Path(folder) / "tta.journal"
        env = {**os.environ, "KMNIST_SWEEP_STORAGE": str(journal)}
        command = ["kmnist-sweep", "run", str(SWEEP), "--name", "tta"]
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        seconds, best = None, 0.0
        try:
            while time.perf_counter() - start < budget_s and proc.poll() is None:
                time.sleep(poll)
                best = max(best, _best_so_far(journal))
                if best >= target:
                    seconds = time.perf_counter() - start
                    break
        finally:  # measured: the sweep and its agents are not needed any more
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return {"seconds": seconds, "best_val_seen": best, "command": " ".join(command)}


def _best_so_far(journal: Path) -> float:
    """The best validation accuracy any trial has reported so far (0 before the first)."""
    if not journal.exists():
        return 0.0
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    storage = optuna.storages.JournalStorage(backend)
    values = [
        value
        for name in optuna.get_all_study_names(storage)
        for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        for value in trial.intermediate_values.values()
    ]
    return max(values, default=0.0)


@click.command()
@click.option("--target", default=0.98, show_default=True, help="validation accuracy to reach")
@click.option("--budget", default=20.0, show_default=True, help="minutes per side")
@click.option("--seed", default=0, show_default=True, help="seed of the baseline's draws")
@click.option("--poll", default=5.0, show_default=True, help="seconds between journal reads")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(target: float, budget: float, seed: int, poll: float, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = project(target, budget * 60, poll)
    print(f"project: {_said(ours['seconds'], budget)} (best val seen {ours['best_val_seen']:.4f})")
    theirs = baseline(target, budget * 60, seed)
    print(f"baseline: {_said(theirs['seconds'], budget)} ({len(theirs['runs'])} runs)")
    ratio = _ratio(theirs["seconds"], ours["seconds"], budget * 60)
    print(f"speed-up: {ratio}")
    record = {
        "benchmark": "time_to_accuracy",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "target": target,
        "budget_minutes": budget,
        "project": ours,
        "baseline": theirs,
        "speedup": ratio,
    }
    path = save_record(record, out)
    print(f"-> {path}")


def _said(seconds: float | None, budget: float) -> str:
    return f"> {budget:g} min" if seconds is None else f"{seconds / 60:.1f} min"


def _ratio(theirs: float | None, ours: float | None, budget_s: float) -> str:
    if ours is None:
        return "not measured: the project did not reach the target within the budget"
    if theirs is None:
        return f">= {budget_s / ours:.1f}x (the baseline did not reach it within the budget)"
    return f"{theirs / ours:.1f}x"


if __name__ == "__main__":
    main()
