"""A record-class sweep in a wall-time budget, then its best model and its ensembles.

Runs, as a user would, `kmnist-sweep run FILE` on a fresh journal; at --minutes it sends the
run SIGTERM (each trial then ends at its next epoch, recorded as stopped) and waits for it.
(Stopping it earlier by hand, with SIGTERM to the run's process group, works the same way.)
Then `kmnist-sweep best --json`, `kmnist-sweep ensemble --json` (the N and the greedy members
chosen on validation) and `ensemble --top 5`. Machine, commands, wall time and the figures
land in bench/results/record_sweep-<time>.json.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/record_sweep.py [--minutes 58]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import click
import optuna
from machine import describe, headline, save_record

SWEEP = Path(__file__).resolve().parent.parent / "sweeps" / "record_cpu.yaml"


def _sweep_id(journal: Path) -> str:
    """The one sweep of a fresh journal (`run` adds a suffix to the name it is given)."""
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    (name,) = optuna.get_all_study_names(optuna.storages.JournalStorage(backend))
    return name


def _json(command: list[str]) -> object:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"exit": proc.returncode, "stderr": proc.stderr.strip()[-500:]}
    return json.loads(proc.stdout)


@click.command()
@click.option("--file", "sweep_file", type=click.Path(exists=True, path_type=Path), default=SWEEP)
@click.option("--minutes", default=58.0, show_default=True, help="SIGTERM the run after this.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(sweep_file: Path, minutes: float, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="record-sweep-"))
    storage = ["--storage", str(folder / "journal.log")]
    name = f"record-{time.strftime('%H%M%S')}"
    command = ["kmnist-sweep", "run", str(sweep_file), "--name", name, *storage]
    print("command:", " ".join(command), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    wall = time.perf_counter() - start
    name = _sweep_id(folder / "journal.log")
    best = _json(["kmnist-sweep", "best", name, *storage, "--json"])
    ensembles = _json(["kmnist-sweep", "ensemble", name, *storage, "--json"])
    top5 = _json(["kmnist-sweep", "ensemble", name, *storage, "--top", "5", "--json"])
    record = {
        "benchmark": "record_sweep",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "command": " ".join(command),
        "run_exit": proc.returncode,
        "wall_minutes": wall / 60,
        "load_average_after": os.getloadavg(),
        "storage": str(folder),
        "best": best,
        "ensemble": ensembles,
        "ensemble_top5": top5,
    }
    path = save_record(record, out)
    print(json.dumps({k: record[k] for k in ("wall_minutes", "best", "ensemble_top5")}, indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
