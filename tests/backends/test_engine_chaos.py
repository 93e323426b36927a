"""Chaos: `kill -9` one of four agents in the middle of a trial.

The three others must notice at once (the dead agent's trial lock is free), fail the trial as
'agent died', run its config again as a linked retry, and still bring the sweep to run_cap
completed trials: nothing left running, nothing lost, nothing counted twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from engine_util import (
    CNN_SWEEP,
    KNN_SWEEP,
    POSTGRES_URL,
    cli,
    counted,
    create,
    finish_all,
    open_storage,
    running,
    start_agents,
    stored_trials,
    sweep_file,
    wait_for,
)
from optuna.trial import TrialState

from kmnist.backends import SweepDone
from kmnist.backends.optuna.backend import OptunaSweep

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

RUN_CAP = 8


def flock_owners() -> dict[int, int]:
    """inode -> pid of every flock held on this host, from /proc/locks."""
    owners = {}
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK":  # waiters show "->" there instead
            owners[int(parts[5].rsplit(":", 1)[1])] = int(parts[4])
    return owners


def trial_owner(locks: Path, agents: list[subprocess.Popen[str]]) -> tuple[int, int] | None:
    """(trial number, agent pid) of a trial some agent holds the lock of, if any."""
    pids = {p.pid for p in agents}
    owners = flock_owners()
    for path in sorted(locks.glob("*.lock")):
        try:
            pid = owners.get(path.stat().st_ino)
        except FileNotFoundError:  # finished meanwhile
            continue
        if pid in pids:
            return int(path.stem), pid
    return None


@pytest.mark.slow
def test_kill_9_mid_trial_loses_nothing(tmp_path: Path, kmnist_dir: Path) -> None:
    # Trials of 5 short epochs: a few seconds each with four agents on two cores.
    path = sweep_file(
        tmp_path,
        CNN_SWEEP,
        run_cap=RUN_CAP,
        early_terminate=None,
        parameters={"epochs": {"value": 5}},
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    locks = Path(f"{journal}.locks") / sweep_id
    agents = start_agents(sweep_id, journal, 4)

    def victim() -> tuple[int, int] | None:
        """A running trial with an epoch done, its agent frozen outside any journal write."""
        found = trial_owner(locks, agents)
        if found is None:
            return None
        number, pid = found
        trial = next(t for t in stored_trials(journal, sweep_id) if t.number == number)
        if trial.state != TrialState.RUNNING or not trial.intermediate_values:
            return None
        os.kill(pid, signal.SIGSTOP)
        # Killed while appending to the journal, the agent would leave Optuna's journal lock
        # file behind, which the others break only after its 30 s grace: not this test's point.
        if Path(f"{journal}.lock").exists() or trial_owner(locks, agents) != found:
            os.kill(pid, signal.SIGCONT)
            return None
        return found

    dead_number, pid = wait_for(victim, 90, "a trial in progress", every=0.2)
    os.kill(pid, signal.SIGKILL)
    killed = next(p for p in agents if p.pid == pid)
    survivors = [p for p in agents if p is not killed]
    assert finish_all([killed], timeout=10)[0][0] == -signal.SIGKILL

    started = time.monotonic()
    for code, err in finish_all(survivors, timeout=150):
        assert code == 0, err
        assert f"run_cap {RUN_CAP} reached" in err.strip().splitlines()[-1], err
    assert time.monotonic() - started < 150

    trials = stored_trials(journal, sweep_id)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    shown = counted(trials)
    by_number = {t.number: t for t in shown}
    dead = by_number[dead_number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["failure_reason"] == "agent died"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead_number]
    assert len(retries) == 1  # run again exactly once
    (retry,) = retries
    assert retry.state == TrialState.COMPLETE and retry.number > dead_number
    assert retry.user_attrs["config"] == dead.user_attrs["config"]  # no config lost
    assert retry.params == dead.params
    assert "failure_reason" not in retry.user_attrs
    # run_cap completed, plus the one the kill cost: none lost, none counted twice.
    assert sorted(t.state for t in shown) == sorted(
        [TrialState.COMPLETE] * RUN_CAP + [TrialState.FAIL]
    )
    # Every other trial failed nowhere: only the dead one carries a failure.
    assert [t.number for t in shown if t.user_attrs.get("failure_reason")] == [dead_number]

    board = json.loads(
        cli("leaderboard", sweep_id, "--storage", journal, "--format", "json").stdout
    )
    states = {row["trial"]: (row["state"], row["reason"]) for row in board}
    assert states[dead_number] == ("failed", "agent died")
    assert states[retry.number] == (f"completed (retry of {dead_number})", "")
    assert len(board) == RUN_CAP + 1


DIES_AFTER_ASK = """
import os, signal, sys
from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.backends.optuna.bridge import suggest_config

# next_trial up to the lock: the trial is RUNNING with its config, and the agent dies.
sweep = OptunaSweep(sys.argv[1], sys.argv[2])
trial = sweep.study.ask()
trial.set_user_attr("config", suggest_config(trial, sweep.spec))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_agent_killed_before_locking_its_trial(tmp_path: Path) -> None:
    """The one moment a dead agent leaves no free lock: right after it took the trial."""
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=1), journal)
    script = tmp_path / "dies.py"
    script.write_text(DIES_AFTER_ASK, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), sweep_id, journal], check=False)
    assert done.returncode == -signal.SIGKILL
    (orphan,) = stored_trials(journal, sweep_id)
    assert orphan.state == TrialState.RUNNING

    sweep = OptunaSweep(sweep_id, journal)
    assert sweep.liveness.reap_dead_trials() == []  # young: its agent may still be about to lock it
    sweep.liveness.lock_grace = 0.5
    time.sleep(0.6)
    assert sweep.liveness.reap_dead_trials() == [orphan.number]

    ticket = sweep.next_trial()  # the retry, with the orphan's parameters
    assert ticket.retry_of == orphan.number
    sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [])
    dead, retry = stored_trials(journal, sweep_id)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (TrialState.FAIL, "agent died")
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params != {}
    assert retry.user_attrs["config"] == dead.user_attrs["config"]
    with pytest.raises(SweepDone):
        sweep.next_trial()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_kill_9_on_postgresql_is_caught_by_heartbeat(tmp_path: Path, kmnist_dir: Path) -> None:
    """Across hosts there is no lock to probe: a trial whose heartbeat stopped is failed."""
    path = sweep_file(
        tmp_path,
        CNN_SWEEP,
        name=f"test-chaos-{uuid.uuid4().hex[:8]}",
        run_cap=1,
        early_terminate=None,
        parameters={"epochs": {"value": 40}},
    )
    sweep_id = create(path, POSTGRES_URL)
    try:
        (agent,) = start_agents(sweep_id, POSTGRES_URL, 1)
        wait_for(
            lambda: [t for t in running(POSTGRES_URL, sweep_id) if t.intermediate_values],
            60,
            "trial 0 in progress",
        )
        agent.kill()
        assert finish_all([agent])[0][0] == -signal.SIGKILL

        sweep = OptunaSweep(sweep_id, POSTGRES_URL)
        assert sweep.liveness.reap_dead_trials() == []  # its last heartbeat is recent
        sweep.storage.grace_period = 1  # the default, 60 s, is too long to wait for here
        time.sleep(1.5)
        assert sweep.liveness.reap_dead_trials() == [0]
        assert sweep.liveness.reap_dead_trials() == []  # failed once, retried once

        ticket = sweep.next_trial()
        assert ticket.retry_of == 0
        sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [])
        dead, retry = stored_trials(POSTGRES_URL, sweep_id)
        assert dead.state == TrialState.FAIL
        assert dead.user_attrs.get("failure_reason") == "agent died"
        assert retry.state == TrialState.COMPLETE
        assert retry.user_attrs["config"] == dead.user_attrs["config"]
    finally:
        optuna.delete_study(study_name=sweep_id, storage=open_storage(POSTGRES_URL))
