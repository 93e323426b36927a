"""The offline engine's private uses of Optuna still work: pinned to the locked Optuna version.

`kmnist/backends/optuna/private.py` holds every private use; these tests fail, naming it, when
another Optuna is installed or a use stops working, so an upgrade re-checks each one.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage

from kmnist.backends.optuna import private

ROOT = Path(__file__).resolve().parents[2]
RECHECK = "re-check each use in kmnist/backends/optuna/private.py, then update OPTUNA_VERSION"


def locked_version() -> str:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    found = re.search(r"^optuna==(\S+)$", lock, re.MULTILINE)
    assert found, "requirements.lock pins no optuna"
    return found.group(1)


def test_installed_optuna_is_the_locked_one() -> None:
    assert locked_version() == private.OPTUNA_VERSION, f"the lock moved: {RECHECK}"
    assert optuna.__version__ == private.OPTUNA_VERSION, (
        f"Optuna {optuna.__version__} is installed, {private.OPTUNA_VERSION} was checked: {RECHECK}"
    )


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_heartbeat_silences_reads_each_running_trials_last_beat(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        storage = RDBStorage(
            f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval=1, grace_period=1
        )
    study = optuna.create_study(storage=storage, study_name="s")
    study_id = storage.get_study_id_from_name("s")
    silent, alive, quiet = study.ask(), study.ask(), study.ask()
    ids = {
        t.number: storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        for t in (silent, alive, quiet)
    }
    storage.record_heartbeat(ids[silent.number])
    time.sleep(3.2)  # past the grace period; SQLite's clock counts whole seconds
    storage.record_heartbeat(ids[alive.number])
    silences = private.heartbeat_silences(storage, study_id)
    assert set(silences) == set(ids.values()), f"private.heartbeat_silences changed: {RECHECK}"
    assert silences[ids[quiet.number]] is None  # never beat
    assert silences[ids[silent.number]] >= 3.0 > 1.0 >= silences[ids[alive.number]], RECHECK
