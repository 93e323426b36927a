"""Helpers for the offline-engine tests: tiny sweep files, real agent processes, storage reads.

Everything here runs for real: `kmnist-sweep` as a subprocess, Optuna studies in a journal file
or PostgreSQL, KMNIST from $KMNIST_DATA_DIR. Sizes are chosen so a trial takes well under a
second (kNN) or about a second (CNN) on one CPU thread.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.pool import NullPool

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLI = [sys.executable, "-m", "kmnist.cli"]  # `kmnist-sweep`, without the pyenv shim's startup

KNN_SWEEP: dict[str, Any] = {
    "name": "knn-small",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 8,
    "parameters": {
        "model": {"value": "knn"},
        "train_size": {"value": 2000},
        "val_fraction": {"value": 0.05},
        "k": {"min": 1, "max": 12},
        "weights": {"values": ["uniform", "distance"]},
        # no manhattan: torch.cdist's L1 takes ~9 s a trial here, against ~1 s for these two
        # (tests/trainer/test_knn.py checks it against scikit-learn)
        "metric": {"values": ["euclidean", "cosine"]},
        "pca_components": {"values": [0, 30]},
    },
}

# The starter CNN shrunk to a few thousand weights: about 0.2 s per epoch on 1200 images.
CNN_SWEEP: dict[str, Any] = {
    "name": "cnn-small",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 6,
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3},
    "parameters": {
        "model": {"value": "cnn"},
        "train_size": {"value": 1200},
        "val_fraction": {"value": 0.02},
        "epochs": {"value": 3},
        "l1_size": {"value": 4},
        "l2_size": {"value": 8},
        "fc1_size": {"value": 16},
        "lr": {"distribution": "log_uniform_values", "min": 3.0e-4, "max": 1.0e-2},
    },
}


def sweep_file(folder: Path, base: dict[str, Any], **changes: Any) -> Path:
    """`base` with top-level keys replaced (None drops one) and `parameters` entries merged,
    written as YAML."""
    body = copy.deepcopy(base)
    body["parameters"].update(changes.pop("parameters", {}))
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    path = folder / f"{body['name']}-{len(list(folder.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


# The objectives of a scheduler sweep: one, and the pair a Pareto front needs.
SINGLE = [{"name": "val/accuracy", "goal": "maximize"}]
PAIR = [{"name": "val/accuracy", "goal": "maximize"}, {"name": "parameters", "goal": "minimize"}]


def scheduler_file(
    folder: Path,
    engine: str,
    metrics: list[dict[str, str]],
    parameters: dict[str, Any],
    run_cap: int,
    program: str = "kmnist/wandb_entry.py",
) -> Path:
    """A W&B scheduler sweep (`method: custom`) on `engine`, one objective as `metric`, more as
    `metrics`, written as FOLDER/ENGINE.yaml."""
    body: dict[str, Any] = {
        "program": program,
        "method": "custom",
        "scheduler": {"engine": engine},
        "run_cap": run_cap,
        "parameters": parameters,
    }
    body.update({"metrics": metrics} if len(metrics) > 1 else {"metric": metrics[0]})
    path = folder / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def cli(*args: str, timeout: float = 120, **run: Any) -> subprocess.CompletedProcess[str]:
    """`kmnist-sweep ARGS`, its output captured; `run` goes to subprocess.run (preexec_fn...)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, **run
    )


def create(path: Path, storage: str, *extra: str) -> str:
    # The offline engine whatever the environment: `auto` would pick W&B given an API key.
    done = cli("create", str(path), "--backend", "optuna", "--storage", storage, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


_started: list[subprocess.Popen[str]] = []


def start_agents(sweep_id: str, storage: str, n: int, *extra: str) -> list[subprocess.Popen[str]]:
    command = [*CLI, "agent", sweep_id, "--storage", storage, "--quiet", "--threads", "1", *extra]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    for proc in procs:
        tracked(proc)
    return procs


def tracked(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """An agent process the test started: conftest's `no_agent_outlives_its_test` ends it."""
    _started.append(proc)
    return proc


def end_started_agents() -> None:
    """Kill every agent a test left running (woken first: a stopped one cannot die)."""
    while _started:
        p = _started.pop()
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
        p.communicate()


def finish_all(
    procs: Sequence[subprocess.Popen[str]], timeout: float = 120
) -> list[tuple[int, str]]:
    """Wait for every process; (exit code, stderr) of each. Kills them all on a timeout."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def open_storage(url: str) -> BaseStorage:
    """The study's storage opened with Optuna alone, independently of kmnist's own code."""
    if url.startswith("postgresql://"):
        return _database(url)
    return JournalStorage(JournalFileBackend(url, lock_obj=JournalFileOpenLock(url)))


@functools.cache
def _database(url: str) -> RDBStorage:
    """One storage per database and process, a connection per call (NullPool). Tests poll it
    ten times a second; a storage per call held its pooled connection until the garbage
    collector came, and two workers ran PostgreSQL out of its 100 clients. SQLAlchemy 2.1
    reads a bare postgresql:// as psycopg 3; Optuna alone needs the driver named."""
    driver_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return RDBStorage(driver_url, engine_kwargs={"poolclass": NullPool})


def stored_trials(url: str, sweep_id: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=sweep_id, storage=open_storage(url)).get_trials()


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials a user sees: all but those discarded after a lost race for the last slot."""
    return [t for t in trials if "discarded" not in t.user_attrs]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def running(url: str, sweep_id: str) -> list[FrozenTrial]:
    return [t for t in stored_trials(url, sweep_id) if t.state == TrialState.RUNNING]


# -- checks ------------------------------------------------------------------------------------
def assert_one_line_error(
    proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 2
) -> str:
    """Exit `code` (2: bad input), no traceback, one line on stderr holding every fragment;
    returns the line."""
    assert proc.returncode == code, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def unprivileged() -> tuple[str, ...]:
    """A command prefix that makes file permissions bind this process, even as root."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: file permissions cannot bind")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `folder` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
