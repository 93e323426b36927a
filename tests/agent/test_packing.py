"""Packed trials: several agents sharing one device give each trial the numbers it gets alone.

On a GPU, `--gpu-share` packs N agent processes onto one device; what packing must not change is
any trial's result. The same code path runs here on the CPU: one agent working through a grid
alone, then two agents through the same grid at once, and every trial's history compared.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_util import (
    CNN_SWEEP,
    create,
    finish_all,
    start_agents,
    stored_trials,
    sweep_file,
)
from optuna.trial import TrialState

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

GRID = {"lr": {"values": [1.0e-3, 1.0e-2]}, "epochs": {"value": 2}}


def _histories(tmp_path: Path, name: str, agents: int) -> dict[float, list[float]]:
    """lr -> the validation accuracy of each epoch, from a grid worked by `agents` at once."""
    journal = str(tmp_path / f"{name}.journal")
    # No early termination: hyperband's cuts depend on which trials ran first, by design.
    path = sweep_file(tmp_path, CNN_SWEEP, method="grid", run_cap=None, early_terminate=None,
                      parameters=GRID)  # fmt: skip
    sweep_id = create(path, journal)
    for code, err in finish_all(start_agents(sweep_id, journal, agents)):
        assert code == 0, err
    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(GRID["lr"]["values"])
    return {
        t.params["lr"]: [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        for t in trials
    }


@pytest.mark.slow  # four agent processes start: about 30 s
def test_two_packed_agents_give_every_trial_its_numbers_alone(tmp_path: Path) -> None:
    alone = _histories(tmp_path, "alone", agents=1)
    packed = _histories(tmp_path, "packed", agents=2)
    assert packed == alone  # bit for bit: same seed, same arithmetic, whoever ran it
    assert len({tuple(h) for h in alone.values()}) == 2  # the grid points did differ
