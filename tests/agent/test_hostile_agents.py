"""Hostile conditions for agents: stalls, deaths, closed terminals, bad devices, no memory, a
storage that goes away under a running trial.

Real agent processes and real signals, on a real journal file or the PostgreSQL that runs here.
Heartbeat windows are shortened through KMNIST_HEARTBEAT_SECONDS / _GRACE_SECONDS so a stall
past the window takes seconds, not a minute. A database that goes away is a database of the
test's own whose connections PostgreSQL is told to refuse and whose backends it terminates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import psycopg2
import pytest
import torch
from engine_util import (
    CLI,
    CNN_SWEEP,
    KNN_SWEEP,
    POSTGRES_URL,
    assert_one_line_error,
    cli,
    counted,
    create,
    open_storage,
    stored_trials,
    sweep_file,
    tracked,
    unprivileged,
    wait_for,
)
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.trainer.faults import device_fault
from kmnist.trainer.params import ConfigError

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e


def agent(
    sweep_id: str, storage: str, err: Path, *extra: str, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """An agent process whose stderr goes to `err`, to read while it runs."""
    command = [*prefix, *CLI, "agent", sweep_id, "--storage", storage, "--threads", "1", *extra]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=err.open("w"), text=True, env=os.environ
    )
    tracked(proc)
    return proc


def ended(proc: subprocess.Popen[str], err: Path, timeout: float = 90) -> tuple[int, list[str]]:
    """The agent's exit code and its stderr lines, once it exits."""
    code = proc.wait(timeout=timeout)
    return code, err.read_text().strip().splitlines()


def no_traceback(lines: list[str]) -> None:
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)


def trial_with_an_epoch(storage: str, sweep_id: str) -> FrozenTrial | None:
    trials = [t for t in stored_trials(storage, sweep_id) if t.state == TrialState.RUNNING]
    return next((t for t in trials if t.intermediate_values), None)


def freeze_mid_trial(proc: subprocess.Popen[str], journal: str, sweep_id: str) -> FrozenTrial:
    """SIGSTOP the agent once its trial has an epoch, outside any journal write (a stop while
    it holds the journal's lock would stall every other agent for the lock's 30 s grace)."""

    def frozen() -> FrozenTrial | None:
        if trial_with_an_epoch(journal, sweep_id) is None:
            return None
        os.kill(proc.pid, signal.SIGSTOP)
        trial = trial_with_an_epoch(journal, sweep_id)
        if trial is None or Path(f"{journal}.lock").exists():
            os.kill(proc.pid, signal.SIGCONT)
            return None
        return trial

    return wait_for(frozen, 90, "a trial in progress", every=0.1)


def status_line(sweep_id: str, storage: str) -> str:
    done = cli("status", sweep_id, "--storage", storage)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def dead_in_status(sweep_id: str, storage: str) -> str | None:
    line = status_line(sweep_id, storage)
    return line if "agents dead" in line else None


@pytest.fixture
def pg_sweep(tmp_path: Path) -> Iterator[Path]:
    """A sweep file with a fresh name for PostgreSQL; its study is deleted afterwards."""
    name = f"test-hostile-{uuid.uuid4().hex[:8]}"
    yield tmp_path / name
    storage = open_storage(POSTGRES_URL)
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(name):
            optuna.delete_study(study_name=summary.study_name, storage=storage)


# -- stalls and deaths ---------------------------------------------------------------------------
@pytest.mark.slow
def test_an_agent_stopped_past_the_heartbeat_window_drops_its_trial_and_goes_on(
    tmp_path: Path, kmnist_dir: Path, pg_sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMNIST_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("KMNIST_HEARTBEAT_GRACE_SECONDS", "2")
    path = sweep_file(
        tmp_path,
        CNN_SWEEP,
        name=pg_sweep.name,
        run_cap=2,
        early_terminate=None,
        parameters={"epochs": {"value": 8}},
    )
    sweep_id = create(path, POSTGRES_URL)
    stalled = agent(sweep_id, POSTGRES_URL, tmp_path / "stalled.err")
    victim = wait_for(lambda: trial_with_an_epoch(POSTGRES_URL, sweep_id), 90, "an epoch")
    os.kill(stalled.pid, signal.SIGSTOP)  # a VM pause, a laptop lid, ^Z
    line = wait_for(lambda: dead_in_status(sweep_id, POSTGRES_URL), 30, "status: dead")
    assert "agents alive 0" in line and f"trial {victim.number}: no heartbeat for" in line

    other = agent(sweep_id, POSTGRES_URL, tmp_path / "other.err")  # reaps it, runs it again
    wait_for(
        lambda: any(
            t.system_attrs.get("failed_trial") == victim.number
            for t in stored_trials(POSTGRES_URL, sweep_id)
        ),
        60,
        "the stalled trial queued again",
    )
    os.kill(stalled.pid, signal.SIGCONT)
    code, lines = ended(stalled, tmp_path / "stalled.err")
    no_traceback(lines)
    assert code == 0, lines
    dropped = [line for line in lines if "dropped here" in line]
    assert len(dropped) == 1 and f"trial {victim.number} was failed as dead" in dropped[0]
    assert "run_cap 2 reached" in lines[-1] and "1 lost" in lines[-1]
    code, lines = ended(other, tmp_path / "other.err")
    assert code == 0 and "run_cap 2 reached" in lines[-1], lines

    trials = counted(stored_trials(POSTGRES_URL, sweep_id))
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]  # the stalled run is not counted twice
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == victim.number and failed.user_attrs["failure_reason"] == "agent died"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params


@pytest.mark.slow
def test_an_agent_waits_for_trials_running_elsewhere_and_reruns_one_whose_agent_dies(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    """The survivors' old behaviour, exit 'sweep finished' while another agent's trial runs,
    left that trial unretried when its agent then died. Now they wait; --no-wait leaves."""
    path = sweep_file(
        tmp_path, CNN_SWEEP, run_cap=2, early_terminate=None, parameters={"epochs": {"value": 6}}
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    doomed = agent(sweep_id, journal, tmp_path / "doomed.err", "--quiet")
    victim = freeze_mid_trial(doomed, journal, sweep_id)  # alive, holding trial 0's lock

    hasty = agent(sweep_id, journal, tmp_path / "hasty.err", "--no-wait")
    code, lines = ended(hasty, tmp_path / "hasty.err")
    assert code == 0, lines
    assert "run_cap 2 reached; 1 trial(s) still running elsewhere" in lines[-1], lines
    assert "not waiting for them" in lines[-1]

    patient_err = tmp_path / "patient.err"
    patient = agent(sweep_id, journal, patient_err, "--quiet")
    wait_for(lambda: "waiting, should their agents die" in patient_err.read_text(), 60, "wait")
    line = status_line(sweep_id, journal)
    assert "agents alive 1" in line and "dead" not in line  # stopped is not dead
    os.kill(doomed.pid, signal.SIGKILL)
    code, lines = ended(patient, patient_err)
    no_traceback(lines)
    assert code == 0 and "1 completed; sweep finished: run_cap 2 reached" in lines[-1], lines

    trials = counted(stored_trials(journal, sweep_id))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = next(t for t in trials if t.number == victim.number)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (TrialState.FAIL, "agent died")
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


def test_status_tells_a_dead_agent_on_a_journal(tmp_path: Path, kmnist_dir: Path) -> None:
    path = sweep_file(
        tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None, parameters={"epochs": {"value": 40}}
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    proc = agent(sweep_id, journal, tmp_path / "a.err")
    victim = freeze_mid_trial(proc, journal, sweep_id)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    line = status_line(sweep_id, journal)
    assert "agents alive 0; agents dead 1" in line
    assert f"trial {victim.number}: its agent holds no trial lock" in line


DIES_BEFORE_ITS_FIRST_BEAT = """
import os, signal, sys
from kmnist.backends.optuna.backend import OptunaSweep

sweep = OptunaSweep(sys.argv[1], sys.argv[2])
sweep.study.ask()  # RUNNING, and no heartbeat yet
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_whose_agent_died_before_its_first_heartbeat_is_run_again(
    tmp_path: Path, pg_sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's own reaper skips a running trial with no heartbeat: it would wait forever."""
    monkeypatch.setenv("KMNIST_HEARTBEAT_GRACE_SECONDS", "1")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, name=pg_sweep.name, run_cap=1), POSTGRES_URL)
    script = tmp_path / "dies.py"
    script.write_text(DIES_BEFORE_ITS_FIRST_BEAT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), sweep_id, POSTGRES_URL], check=False)
    assert done.returncode == -signal.SIGKILL
    sweep = OptunaSweep(sweep_id, POSTGRES_URL)
    assert sweep.liveness.reap_dead_trials() == []  # first seen now: its agent may be about to beat
    time.sleep(1.5)
    assert sweep.liveness.reap_dead_trials() == [0]
    ticket = sweep.next_trial()
    assert ticket.retry_of == 0
    sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [])
    assert [t.state for t in stored_trials(POSTGRES_URL, sweep_id)] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]


def test_sighup_ends_the_trial_like_sigterm_and_queues_it_again(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    path = sweep_file(
        tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None, parameters={"epochs": {"value": 40}}
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    proc = agent(sweep_id, journal, tmp_path / "a.err")
    wait_for(lambda: trial_with_an_epoch(journal, sweep_id), 90, "an epoch")
    proc.send_signal(signal.SIGHUP)  # the terminal it ran in was closed
    code, lines = ended(proc, tmp_path / "a.err", timeout=30)
    no_traceback(lines)
    assert code == 0 and "interrupted by SIGHUP" in lines[-1], lines
    dead, retry = stored_trials(journal, sweep_id)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (TrialState.FAIL, "agent interrupted")
    assert retry.state == TrialState.WAITING and retry.params == dead.params


# -- devices -----------------------------------------------------------------------------------
def _missing_devices() -> list[str]:
    """Devices this host lacks, whatever it is."""
    missing = ["banana", "cuda:7" if torch.cuda.device_count() < 8 else "cuda:99"]
    missing += [] if torch.cuda.is_available() else ["cuda"]
    missing += [] if torch.backends.mps.is_available() else ["mps"]
    return missing


def test_an_agent_on_a_device_the_host_lacks_stops_before_any_trial(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=1), journal)
    for device in _missing_devices()[1:]:  # cuda:N past the last GPU, cuda or mps
        done = cli("agent", sweep_id, "--storage", journal, "--device", device)
        assert_one_line_error(done, f"--device {device}: ")
    assert stored_trials(journal, sweep_id) == []  # nothing taken, nothing used up


@pytest.mark.parametrize("device", _missing_devices())
def test_train_on_a_device_the_host_lacks_is_one_line(device: str) -> None:
    trained = cli("train", "--device", device, "--model=knn", "--train_size=100")
    assert_one_line_error(trained, "--device", "cpu")


def test_out_of_memory_on_every_trial_stops_the_agent_and_uses_up_no_run_cap(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    # A hidden layer of 10^15 units asks the allocator for about an exabyte: refused at once
    # (beyond any address space, whatever the overcommit policy), as no memory on the device.
    path = sweep_file(
        tmp_path,
        CNN_SWEEP,
        run_cap=4,
        early_terminate=None,
        parameters={"fc1_size": {"value": 10**15}},
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    proc = agent(sweep_id, journal, tmp_path / "a.err", "--device", "cpu", "--quiet")
    code, lines = ended(proc, tmp_path / "a.err")
    no_traceback(lines)
    assert code == 1, lines
    assert len(lines) == 1 and "3 trials in a row ran out of memory on cpu" in lines[0], lines
    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.WAITING]
    assert all("can't allocate memory" in t.user_attrs["failure_reason"] for t in trials[:3])
    # None of it counts against run_cap: each failure is queued to run again.
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    assert retried == {0, 1, 2}


def _raised(make: Any) -> BaseException:
    """The exception `make()` really raises."""
    try:
        make()
    except BaseException as exc:  # the point is to keep it
        return exc
    raise AssertionError("expected it to raise")


@pytest.mark.parametrize(
    "error,kind",
    [
        # Raised for real here: the CPU allocator's refusal (a bare RuntimeError), numpy's.
        (_raised(lambda: torch.empty(10**15)), "memory"),
        (_raised(lambda: np.empty(10**15)), "memory"),
        # Their types, as CUDA raises them (no GPU here to make them fail for real).
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "memory"),
        (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), "device"),
        (RuntimeError("CUDA error: no kernel image is available for execution"), "device"),
        (ConfigError("batch_size must be at least 1"), None),
        # Words about memory outside torch's own errors are no device's fault.
        (ValueError("fc1_size too large: would run out of memory"), None),
        (RuntimeError("the trial's note: out of memory last time"), None),
    ],
)
def test_device_failures_are_told_from_trial_failures_by_the_exception(
    error: BaseException, kind: str | None
) -> None:
    assert device_fault(error) == kind


# Loads the data, then allows the process only 512 MiB more address space (RLIMIT_AS), as a
# host with that much memory left would: a small CNN still trains, a 1.2 GB layer cannot.
UNDER_A_MEMORY_LIMIT = """
import json, resource, sys
import torch
from kmnist.trainer import data, train

torch.set_num_threads(1)
dataset = data.load()
size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
limit = size * 1024 + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
small = {"model": "cnn", "train_size": 1200, "val_fraction": 0.02, "epochs": 1,
         "l1_size": 4, "l2_size": 8, "fc1_size": 16}
for fc1_size in (16, 250_000):  # 1152 x 250k fp32 weights: 1.15 GB, and Adam's twice that
    result = train.run({**small, "fc1_size": fc1_size}, None, "cpu", dataset)
    print(json.dumps([result.status, result.device_fault, result.reason]), flush=True)
"""


def test_a_trial_the_host_has_no_memory_for_is_marked_so_by_the_trainer(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    script = tmp_path / "limited.py"
    script.write_text(UNDER_A_MEMORY_LIMIT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    fits, too_big = (json.loads(line) for line in done.stdout.splitlines())
    assert fits[:2] == ["completed", None], fits
    status, fault, reason = too_big
    assert (status, fault) == ("failed", "memory"), too_big
    assert reason.startswith("out of memory on cpu") and "can't allocate memory" in reason


# -- the storage goes away under a running trial ---------------------------------------------
PLANTED_PASSWORD = "Pl4nted-pw"  # trust auth never asks for it; no output may show it


def _postgres_admin(*statements: str) -> None:
    """Statements run as the superuser on the `test` database, each outside a transaction."""
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def own_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own (its connections can be cut without touching
    any other test's), as a URL with a password in it; dropped afterwards."""
    name = f"kmnist_hostile_{uuid.uuid4().hex[:8]}"
    _postgres_admin(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres:{PLANTED_PASSWORD}@127.0.0.1:5432/{name}"
    finally:
        _postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cut_connections(url: str, refuse: bool) -> None:
    """PostgreSQL terminates every backend of the database; with `refuse`, it also refuses
    new connections to it from now on (the database gone, for its clients)."""
    name = url.rsplit("/", 1)[1]
    refusing = [f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"] if refuse else []
    _postgres_admin(
        *refusing,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )


def allow_connections(url: str) -> None:
    _postgres_admin(f"ALTER DATABASE {url.rsplit('/', 1)[1]} WITH ALLOW_CONNECTIONS true")


def running_trial(url: str, sweep_id: str, epochs: int = 1) -> FrozenTrial | None:
    """The running trial, once it has its config and at least `epochs` epochs reported."""
    for t in stored_trials(url, sweep_id):
        ready = "config" in t.user_attrs and len(t.intermediate_values) >= epochs
        if t.state == TrialState.RUNNING and ready:
            return t
    return None


def as_recorded(trials: list[FrozenTrial]) -> list[tuple[Any, ...]]:
    return [
        (t.number, t.state, t.value, t.intermediate_values, t.user_attrs, t.system_attrs)
        for t in trials
    ]


def earlier_trials_and_a_long_sweep(
    tmp_path: Path, storage: str, **long_sweep: Any
) -> tuple[str, list[tuple[Any, ...]], str]:
    """A sweep with a trial done, and a sweep of one long CNN trial: (the first sweep's id,
    its trials as recorded, the long sweep's id)."""
    done_id = create(sweep_file(tmp_path, KNN_SWEEP), storage)
    ran = cli("agent", done_id, "--storage", storage, "--count", "1", "--threads", "1", "--quiet")
    assert ran.returncode == 0, ran.stderr
    done = as_recorded(stored_trials(storage, done_id))
    assert [state for _, state, *_ in done] == [TrialState.COMPLETE]
    long_sweep = {"run_cap": 2, "early_terminate": None, **long_sweep}
    parameters = {"epochs": {"value": 60}} | long_sweep.pop("parameters", {})
    long_id = create(sweep_file(tmp_path, CNN_SWEEP, parameters=parameters, **long_sweep), storage)
    return done_id, done, long_id


def assert_run_again(storage: str, sweep_id: str, cut: FrozenTrial) -> None:
    """The cut trial is failed as dead by the next one to look, and queued again, linked."""
    sweep = OptunaSweep(sweep_id, storage)
    # Journal: its lock was freed as its agent exited. Database: its heartbeat went silent.
    wait_for(lambda: sweep.liveness.reap_dead_trials() == [cut.number], 30, "the cut trial reaped")
    dead, retry = stored_trials(storage, sweep_id)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (TrialState.FAIL, "agent died")
    assert (retry.state, retry.system_attrs["failed_trial"]) == (TrialState.WAITING, cut.number)
    assert retry.params == cut.params


@pytest.mark.slow
@pytest.mark.parametrize("during", ["report", "finish"])
def test_an_agent_whose_database_goes_away_mid_trial_stops_with_one_line(
    tmp_path: Path,
    kmnist_dir: Path,
    own_database: str,
    monkeypatch: pytest.MonkeyPatch,
    during: str,
) -> None:
    """Cut while an epoch is reported, or (a metric only the summary holds, so nothing is
    written between the trial's start and its end) while the result is sent back."""
    monkeypatch.setenv("KMNIST_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("KMNIST_HEARTBEAT_GRACE_SECONDS", "2")
    url = own_database
    metric = {
        "name": "val/accuracy" if during == "report" else "val/best_accuracy",
        "goal": "maximize",
    }
    done_id, done, sweep_id = earlier_trials_and_a_long_sweep(tmp_path, url, metric=metric)
    err = tmp_path / "a.err"
    proc = agent(sweep_id, url, err, "--quiet")
    epochs = 1 if during == "report" else 0
    wait_for(lambda: running_trial(url, sweep_id, epochs), 90, "a trial in progress")
    cut_connections(url, refuse=True)
    code, lines = ended(proc, err)
    allow_connections(url)

    no_traceback(lines)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(
        f"Error: cannot reach sweep storage {url.replace(PLANTED_PASSWORD, '***')}: "
    )
    assert "not currently accepting connections" in lines[0] and PLANTED_PASSWORD not in lines[0]
    assert as_recorded(stored_trials(url, done_id)) == done  # nothing recorded before is lost
    (cut,) = stored_trials(url, sweep_id)
    assert cut.state == TrialState.RUNNING and "summary" not in cut.user_attrs
    assert bool(cut.intermediate_values) == (during == "report")
    # Left to the heartbeat reaper: nothing can queue it again while the database is away.
    assert_run_again(url, sweep_id, cut)


@pytest.mark.slow
def test_a_database_connection_cut_while_idle_costs_the_trial_nothing(
    tmp_path: Path, kmnist_dir: Path, own_database: str
) -> None:
    """A restart or a pg_terminate_backend between two epochs: the agent's next call finds
    its pooled connection dead before using it, connects again, and goes on."""
    url = own_database
    path = sweep_file(
        tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None, parameters={"epochs": {"value": 30}}
    )
    sweep_id = create(path, url)
    proc = agent(sweep_id, url, tmp_path / "a.err", "--quiet")
    for epochs in (1, 3):
        wait_for(lambda: running_trial(url, sweep_id, epochs), 90, f"{epochs} epoch(s)")  # noqa: B023
        cut_connections(url, refuse=False)
    code, lines = ended(proc, tmp_path / "a.err")
    no_traceback(lines)
    assert code == 0 and "1 completed; sweep finished: run_cap 1 reached" in lines[-1], lines
    (trial,) = stored_trials(url, sweep_id)
    assert trial.state == TrialState.COMPLETE and len(trial.intermediate_values) == 30


@pytest.mark.slow
@pytest.mark.parametrize("how", ["moved away", "made unreadable"])
def test_an_agent_whose_journal_goes_away_mid_trial_stops_with_one_line(
    tmp_path: Path, kmnist_dir: Path, how: str
) -> None:
    journal = tmp_path / "sweeps.journal"
    done_id, done, sweep_id = earlier_trials_and_a_long_sweep(tmp_path, str(journal))
    # Root reads any file: the agent runs without that privilege, so a mode 000 binds it.
    prefix = unprivileged() if how == "made unreadable" else ()
    proc = agent(sweep_id, str(journal), tmp_path / "a.err", "--quiet", prefix=prefix)
    freeze_mid_trial(proc, str(journal), sweep_id)  # between two writes: the journal whole
    before = journal.read_bytes()
    moved = tmp_path / "elsewhere.journal"
    if how == "moved away":
        journal.rename(moved)
    else:
        journal.chmod(0)
    os.kill(proc.pid, signal.SIGCONT)
    code, lines = ended(proc, tmp_path / "a.err")
    if how == "moved away":
        assert not journal.exists()  # no empty journal made in its place
        moved.rename(journal)
    else:
        journal.chmod(0o644)

    no_traceback(lines)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"Error: lost sweep storage {journal} while in use: cannot ")
    assert "put it back as it was" in lines[0]
    assert journal.read_bytes() == before  # nothing written, nothing lost
    assert as_recorded(stored_trials(str(journal), done_id)) == done
    (cut,) = stored_trials(str(journal), sweep_id)
    assert cut.state == TrialState.RUNNING and cut.intermediate_values
    # Left to the lock reaper: its lock was freed as the agent exited.
    assert_run_again(str(journal), sweep_id, cut)
