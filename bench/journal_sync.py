"""What fsyncing the journal costs: per-trial dispatch with each record fsynced (the default),
only the records that end a trial, or none, four agents at once (`agent_overhead.py`'s loop).
Median latency of a trial as an agent sees it, and wall time per trial of the four together.

The journal lies in a temporary folder (`--dir`, default the system's), so the figure is that
disk's fsync.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/journal_sync.py
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import click
from agent_overhead import AGENTS, engine_times

from kmnist.backends.optuna import journal

MODES = {"append": "every record (default)", "trial": "records that end a trial", "off": "none"}


def fsync_ms(folder: str, n: int = 200) -> float:
    """Median cost of one fsync after a 200-byte append, in this folder."""
    path = Path(folder) / "probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 199 + b"\n")
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


@click.command()
@click.option("--trials", default=50, show_default=True, help="Trials per agent.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="Where the journal lies.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(trials: int, folder: str | None, out: Path) -> None:
    medians, amortized = {}, {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        one_fsync = fsync_ms(tmp)
        for mode in MODES:
            journal.SYNC = mode  # the agents are forked: they inherit it
            times = engine_times(f"{tmp}/{mode}.journal", trials)
            medians[mode] = statistics.median(times) * 1000
            # The agents run at once: their summed busy time over AGENTS is the wall time.
            amortized[mode] = sum(times) / AGENTS / len(times) * 1000
    summary = {
        "benchmark": "journal_sync",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {mp.cpu_count()} cpus",
        "agents": AGENTS,
        "trials": AGENTS * trials,
        "fsync_ms": one_fsync,
        "median_ms_per_trial": {MODES[m]: v for m, v in medians.items()},
        "wall_ms_per_trial": {MODES[m]: v for m, v in amortized.items()},
        "ratio_vs_no_fsync": {MODES[m]: v / amortized["off"] for m, v in amortized.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "journal_sync.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
