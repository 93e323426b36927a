"""The one place the offline engine uses Optuna's private API, each use with why none is public.

Everything else goes through Optuna's public API (Study, Trial, BaseSampler, BaseStorage).
Checked against the Optuna pinned in requirements.lock: `tests/backends/test_optuna_private.py`
fails, naming this module, when another Optuna version is installed or a use here breaks.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

OPTUNA_VERSION = "5.0.0"  # the version these uses were checked against


def heartbeat_silences(storage: RDBStorage, study_id: int) -> dict[int, float | None]:
    """Seconds since each running trial's last heartbeat, by trial id; None: it never beat.

    Why private: Optuna keeps one heartbeat row per running trial but offers only the ids of
    the stale ones (`_get_stale_trial_ids`), which skips a trial that never beat (its agent
    died before the first beat: Optuna's reaper leaves it running forever) and cannot tell
    `status` how long an agent has been silent. The rows are read here from Optuna's own
    tables, with the database's clock, the one Optuna's reaper compares against.
    """
    with _create_scoped_session(storage.scoped_session) as session:
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (
            session.query(models.TrialModel.trial_id, models.TrialHeartbeatModel.heartbeat)
            .outerjoin(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
    now = now.replace(tzinfo=None) if isinstance(now, dt.datetime) else dt.datetime.now()
    return {
        trial_id: None if beat is None else max(0.0, (now - beat).total_seconds())
        for trial_id, beat in rows
    }
