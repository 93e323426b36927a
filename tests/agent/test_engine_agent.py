"""The agent as a user meets it: signals, failures in a row, pause/resume/stop, bad input, the
sweep's target, and `kmnist-sweep run`. Real processes, real KMNIST, a journal file per test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from engine_util import (
    CLI,
    CNN_SWEEP,
    KNN_SWEEP,
    assert_one_line_error,
    cli,
    create,
    finish_all,
    running,
    start_agents,
    stored_trials,
    sweep_file,
    wait_for,
)
from optuna.trial import TrialState

from kmnist.agent.loop import Agent
from kmnist.backends import Ticket, WorkerSweep, open_sweep

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "sweeps.journal")


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


EPOCHS = 12


@pytest.mark.slow
def test_sigterm_mid_trial_exits_0_and_queues_the_trial_again(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    # 12 short epochs: the signal lands mid-trial and the next epoch boundary comes soon.
    path = sweep_file(
        tmp_path,
        CNN_SWEEP,
        run_cap=1,
        early_terminate=None,
        parameters={"epochs": {"value": EPOCHS}},
    )
    sweep_id = create(path, journal)
    (agent,) = start_agents(sweep_id, journal, 1)

    def mid_trial() -> bool:
        trials = stored_trials(journal, sweep_id)
        return (
            bool(trials)
            and trials[0].state == TrialState.RUNNING
            and bool(trials[0].intermediate_values)
        )

    wait_for(mid_trial, 60, "the first epoch of trial 0")
    sent = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    ((code, err),) = finish_all([agent], timeout=30)
    assert code == 0, err
    assert time.monotonic() - sent < 10
    assert "interrupted" in last_line(err)

    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    dead, retry = trials
    assert dead.user_attrs["failure_reason"] == "agent interrupted"
    assert 1 <= len(dead.intermediate_values) < EPOCHS
    assert retry.system_attrs["failed_trial"] == dead.number
    assert retry.params == dead.params
    assert retry.user_attrs == {"config": dead.user_attrs["config"]}  # not the dead run's

    # run_cap 1 still has room: the interrupted trial does not count, its retry does.
    ((code, err),) = finish_all(start_agents(sweep_id, journal, 1), timeout=90)
    assert code == 0, err
    assert "run_cap 1 reached" in last_line(err)
    dead, retry = stored_trials(journal, sweep_id)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["config"] == dead.user_attrs["config"]
    assert len(retry.intermediate_values) == EPOCHS
    assert "failure_reason" not in retry.user_attrs  # a retry carries nothing of the dead run

    board = json.loads(
        cli("leaderboard", sweep_id, "--storage", journal, "--format", "json").stdout
    )
    assert [(r["trial"], r["state"], r["reason"]) for r in board] == [
        (retry.number, f"completed (retry of {dead.number})", ""),
        (dead.number, "failed", "agent interrupted"),
    ]


def test_second_ctrl_c_exits_at_once_and_queues_the_trial_again(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    path = sweep_file(
        tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None, parameters={"epochs": {"value": 40}}
    )
    sweep_id = create(path, journal)
    (agent,) = start_agents(sweep_id, journal, 1)
    wait_for(lambda: running(journal, sweep_id), 60, "trial 0 to start")
    sent = time.monotonic()
    agent.send_signal(signal.SIGINT)
    time.sleep(0.05)
    agent.send_signal(signal.SIGINT)
    ((code, err),) = finish_all([agent], timeout=30)
    assert time.monotonic() - sent < 5
    assert code != 0 and "Traceback" not in err, err
    dead, retry = stored_trials(journal, sweep_id)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (
        TrialState.FAIL,
        "agent interrupted",
    )
    assert len(dead.intermediate_values) < 40
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0


class _CtrlCTwice:
    """The real sweep, with two SIGINTs sent to this process at one chosen moment (in-process,
    so the moment is exact: a second Ctrl-C must queue the trial again wherever it lands)."""

    def __init__(self, sweep: WorkerSweep, moment: str) -> None:
        self.sweep, self.moment = sweep, moment

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sweep, name)

    def _ctrl_c_twice(self, moment: str) -> None:
        if moment == self.moment:
            self.moment = ""
            for _ in range(2):
                os.kill(os.getpid(), signal.SIGINT)

    def next_trial(self) -> Ticket:
        ticket = self.sweep.next_trial()  # the trial is stored as running from here on
        self._ctrl_c_twice("handing out")
        return ticket

    def report(self, ticket: Ticket, epoch: int, metrics: Any) -> bool:
        self._ctrl_c_twice("reporting an epoch")
        return self.sweep.report(ticket, epoch, metrics)


@pytest.mark.parametrize("moment", ["handing out", "reporting an epoch"])
def test_second_ctrl_c_queues_the_trial_again_wherever_it_lands(
    journal: str, kmnist_dir: Path, tmp_path: Path, moment: str
) -> None:
    path = sweep_file(tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None)
    sweep_id = create(path, journal)
    agent = Agent(_CtrlCTwice(open_sweep(sweep_id, journal), moment), device="cpu")
    with pytest.raises(KeyboardInterrupt):
        agent.run()
    dead, retry = stored_trials(journal, sweep_id)
    assert (dead.state, dead.user_attrs["failure_reason"]) == (TrialState.FAIL, "agent interrupted")
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0


def test_agent_gives_up_after_max_failures_in_a_row(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    diverging = {
        "optimizer": {"value": "sgd"},
        "lr": {"value": 1.0e12},
        "epochs": {"value": 2},
    }
    path = sweep_file(tmp_path, CNN_SWEEP, run_cap=10, early_terminate=None, parameters=diverging)
    sweep_id = create(path, journal)
    ((code, err),) = finish_all(start_agents(sweep_id, journal, 1, "--max-failures", "3"))
    assert code == 1, err
    assert "Traceback" not in err
    assert "stopped after 3 failed trials in a row" in last_line(err)

    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # failures are not retried
    for t in trials:
        assert (
            "loss is nan" in t.user_attrs["failure_reason"]
            or "inf" in t.user_attrs["failure_reason"]
        ), t.user_attrs["failure_reason"]


@pytest.mark.slow
def test_pause_resume_and_stop(journal: str, kmnist_dir: Path, tmp_path: Path) -> None:
    paused_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=2), journal)
    stopped_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=2), journal)
    for verb, sweep_id in (("pause", paused_id), ("stop", stopped_id)):
        done = cli(verb, sweep_id, "--storage", journal)
        assert done.returncode == 0, done.stderr

    (waiting,) = start_agents(paused_id, journal, 1)
    (halted,) = start_agents(stopped_id, journal, 1)
    ((code, err),) = finish_all([halted], timeout=60)
    assert code == 0, err
    assert "the sweep was stopped" in last_line(err)
    assert stored_trials(journal, stopped_id) == []

    time.sleep(1.0)  # the paused sweep's agent has had time to ask, and waits
    assert waiting.poll() is None
    assert stored_trials(journal, paused_id) == []
    assert "state paused" in cli("status", paused_id, "--storage", journal).stdout
    listed = cli("ls", "--storage", journal)
    assert paused_id in listed.stdout and "paused" in listed.stdout and "stopped" in listed.stdout

    assert cli("resume", paused_id, "--storage", journal).returncode == 0
    ((code, err),) = finish_all([waiting], timeout=60)
    assert code == 0, err
    assert "run_cap 2 reached" in last_line(err)
    assert [t.state for t in stored_trials(journal, paused_id)] == [TrialState.COMPLETE] * 2
    # a sweep that ran out of trials shows as finished, as W&B shows it; a stopped one stays so
    assert "state finished" in cli("status", paused_id, "--storage", journal).stdout
    listed = cli("ls", "--storage", journal).stdout
    assert "finished" in listed and "stopped" in listed


def test_the_last_trial_of_run_cap_finishes_the_sweep_without_another_ask(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=1), journal)
    ((code, err),) = finish_all(start_agents(sweep_id, journal, 1, "--count", "1"), timeout=60)
    assert code == 0 and "ran --count 1" in last_line(err), err
    assert "state finished" in cli("status", sweep_id, "--storage", journal).stdout
    (row,) = [
        line for line in cli("ls", "--storage", journal).stdout.splitlines() if sweep_id in line
    ]
    assert "finished" in row and "running" not in row


def test_status_best_is_a_completed_trial_as_best_takes_it(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    """An interrupted trial leaves a value behind: neither status nor best calls it the best."""
    sweep_id = create(sweep_file(tmp_path, CNN_SWEEP, run_cap=1, early_terminate=None), journal)
    sweep = open_sweep(sweep_id, journal)
    ticket = sweep.next_trial()
    history = [{"epoch": 1, "val/accuracy": 0.9}]
    sweep.finish(ticket, "interrupted", {"val/accuracy": 0.9}, history, "agent interrupted")
    status = cli("status", sweep_id, "--storage", journal)
    assert "0.9" not in status.stdout, status.stdout
    assert_one_line_error(cli("best", sweep_id, "--storage", journal), "no completed trial")


def test_unknown_sweep_and_invalid_file_are_one_line_exit_2(journal: str, tmp_path: Path) -> None:
    assert_one_line_error(cli("agent", "no-such-sweep", "--storage", journal), "no-such-sweep")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: sideways\nparameters:\n  k:\n    values: [1, 2]\n", encoding="utf-8")
    assert_one_line_error(
        cli("create", str(bad), "--backend", "optuna", "--storage", journal), "bad.yaml", "method"
    )
    assert "bad" not in cli("ls", "--storage", journal).stdout  # nothing was registered


def test_target_reached_ends_every_agent(journal: str, kmnist_dir: Path, tmp_path: Path) -> None:
    metric = {"name": "val/accuracy", "goal": "maximize", "target": 0.5}
    path = sweep_file(tmp_path, KNN_SWEEP, metric=metric, run_cap=30)
    sweep_id = create(path, journal)
    results = finish_all(start_agents(sweep_id, journal, 2), timeout=90)
    for code, err in results:
        assert code == 0, err
        assert "target" in last_line(err), err
    done = [t for t in stored_trials(journal, sweep_id) if t.state == TrialState.COMPLETE]
    assert 1 <= len(done) <= 2  # at most the trials already running when it was met
    assert max(t.value for t in done) >= 0.5
    assert "state finished" in cli("status", sweep_id, "--storage", journal).stdout


@pytest.mark.slow
def test_run_creates_runs_and_prints_the_leaderboard(
    journal: str, kmnist_dir: Path, tmp_path: Path
) -> None:
    path = sweep_file(tmp_path, KNN_SWEEP, run_cap=4)
    done = subprocess.run(
        [*CLI, "run", str(path), "--agents", "2", "--storage", journal],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "knn-small" in done.stdout and "val/accuracy" in done.stdout
    assert done.stdout.count("completed") == 4
