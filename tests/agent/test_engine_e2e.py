"""End to end on the offline engine: `create`, four agent processes, `leaderboard`, for real.

A kNN random sweep and a CNN sweep with W&B's hyperband stopping, each on the embedded journal
file and on PostgreSQL: every trial ends completed or pruned, exactly `run_cap` of them, and the
leaderboard's best is the best Optuna itself reads from the storage.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    start_agents,
    sweep_file,
)
from optuna.trial import TrialState

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e


@dataclass
class Storage:
    url: str
    created: list[str] = field(default_factory=list)


@pytest.fixture(params=["journal", pytest.param("postgresql", marks=pytest.mark.slow)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "journal":
        yield Storage(str(tmp_path / "sweeps.journal"))
        return
    found = Storage(POSTGRES_URL)
    yield found
    for sweep_id in found.created:  # the database outlives the test: leave it as found
        optuna.delete_study(study_name=sweep_id, storage=open_storage(POSTGRES_URL))


@pytest.mark.parametrize(
    "base",
    [KNN_SWEEP, pytest.param(CNN_SWEEP, marks=pytest.mark.slow)],
    ids=["knn-random", "cnn-hyperband"],
)
@pytest.mark.slow
def test_four_agents_run_the_sweep_to_its_cap(
    base: dict[str, Any], storage: Storage, kmnist_dir: Path, tmp_path: Path
) -> None:
    path = sweep_file(tmp_path, base, name=f"test-{base['name']}-{uuid.uuid4().hex[:8]}")
    sweep_id = create(path, storage.url)
    storage.created.append(sweep_id)
    run_cap = base["run_cap"]

    results = finish_all(start_agents(sweep_id, storage.url, 4), timeout=150)
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err
        assert f"run_cap {run_cap} reached" in err.strip().splitlines()[-1], err

    study = optuna.load_study(study_name=sweep_id, storage=open_storage(storage.url))
    trials = study.get_trials()
    shown = counted(trials)
    states = [t.state for t in shown]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, states
    assert len(shown) == run_cap
    # A trial asked in a lost race for the last slot is closed at once, never run.
    for t in trials:
        if t not in shown:
            assert t.state == TrialState.FAIL and not t.intermediate_values
    for t in shown:
        epochs = base["parameters"].get("epochs", {"value": 1})["value"]
        assert 1 <= len(t.intermediate_values) <= epochs
        if t.state == TrialState.COMPLETE:
            assert len(t.intermediate_values) == epochs
            history = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
            assert t.value == max([*history, t.user_attrs["summary"]["val/accuracy"]])
        assert 0.0 < t.user_attrs["summary"]["test/accuracy"] <= 1.0
        assert t.user_attrs["config"]["model"] == base["parameters"]["model"]["value"]

    status = cli("status", sweep_id, "--storage", storage.url)
    assert status.returncode == 0, status.stderr
    assert f"done {run_cap}/{run_cap}" in status.stdout and "running 0" in status.stdout

    shown_board = cli("leaderboard", sweep_id, "--storage", storage.url, "--format", "json")
    assert shown_board.returncode == 0, shown_board.stderr
    board = json.loads(shown_board.stdout)
    assert len(board) == run_cap
    assert sorted(row["trial"] for row in board) == sorted(t.number for t in shown)
    best = board[0]
    assert best["rank"] == 1 and best["state"] == "completed"
    # kNN trials that drew the same config tie; Optuna's RDB storage returns any of them first
    tied = {t.number for t in shown if t.value == study.best_value}
    assert best["trial"] in tied and study.best_trial.number in tied
    assert best["best val/accuracy"] == study.best_value
