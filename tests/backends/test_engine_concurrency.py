"""Many agents on one journal file: 8 processes race through 400 trivial trials.

The backend API is driven directly (no training), so the storage itself is what is tested:
no exception in any process, every trial number handed out once, 0..399 with no gap, none
left running, and no trial past run_cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_util import KNN_SWEEP, counted, create, stored_trials, sweep_file, wait_for
from optuna.trial import TrialState

from kmnist.backends import SweepDone
from kmnist.backends.optuna.backend import OptunaSweep

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

WORKERS = 8
RUN_CAP = 400

WORKER = """
import json, os, random, sys, time
from pathlib import Path
from kmnist.backends import SweepDone
from kmnist.backends.optuna.backend import OptunaSweep

sweep = OptunaSweep(sys.argv[1], sys.argv[2])
folder = Path(sys.argv[3])
(folder / f"ready-{os.getpid()}").touch()
while not (folder / "go").exists():  # all start together, however slow their imports
    time.sleep(0.01)
numbers = []
while True:
    try:
        ticket = sweep.next_trial()
    except SweepDone:
        break
    x = random.random()
    assert sweep.report(ticket, 1, {"val/accuracy": x}) is False
    sweep.finish(ticket, "completed", {"val/accuracy": x}, [{"val/accuracy": x}])
    numbers.append(ticket.number)
print(json.dumps(numbers))
"""


def test_eight_processes_share_one_journal_without_loss_or_overshoot(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=RUN_CAP), journal)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), sweep_id, journal, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    taken: list[int] = []
    try:
        wait_for(lambda: len(list(barrier.glob("ready-*"))) == WORKERS, 120, "workers ready")
        (barrier / "go").touch()
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
            assert "Traceback" not in err and "Error" not in err, err
            mine = json.loads(out)
            assert mine, "every worker got trials"
            taken += mine
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    assert sorted(taken) == list(range(RUN_CAP))  # unique and contiguous: none lost, none twice
    trials = stored_trials(journal, sweep_id)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = counted(trials)
    assert [t.number for t in done] == list(range(RUN_CAP))
    assert all(t.state == TrialState.COMPLETE for t in done)
    # Asks that lost the race for the last slots were closed at once, never handed out.
    assert all(t.number >= RUN_CAP and t.state == TrialState.FAIL for t in trials if t not in done)

    late = OptunaSweep(sweep_id, journal)  # a 9th agent, started once the sweep is full
    with pytest.raises(SweepDone, match=f"run_cap {RUN_CAP} reached"):
        late.next_trial()
    assert len(stored_trials(journal, sweep_id)) == len(trials)  # it did not even ask


def test_eight_processes_walk_a_grid_in_wandbs_order_each_point_once(tmp_path: Path) -> None:
    from kmnist.sweep import grid, load

    body = {
        **{k: v for k, v in KNN_SWEEP.items() if k != "run_cap"},
        "method": "grid",
        "parameters": {
            "model": {"value": "knn"},
            "weights": {"values": ["uniform", "distance"]},
            "k": {"min": 1, "max": 30},
        },
    }
    path = sweep_file(tmp_path, body)
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(path, journal)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), sweep_id, journal, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        wait_for(lambda: len(list(barrier.glob("ready-*"))) == WORKERS, 120, "workers ready")
        (barrier / "go").touch()
        for p in procs:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    trials = stored_trials(journal, sweep_id)
    ran = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    expected = list(grid.points(load(path).parameters))
    assert [t.user_attrs["config"] for t in ran] == expected  # once each, W&B's order by number
    # Asks that lost the race for the last point were closed at once, never handed out.
    assert all(
        t.state == TrialState.FAIL and "discarded" in t.user_attrs for t in trials if t not in ran
    )
