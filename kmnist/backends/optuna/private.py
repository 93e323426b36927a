"""The one place the offline engine uses Optuna's private API, each use with why none is public.

Everything else goes through Optuna's public API (Study, Trial, BaseSampler, BaseStorage).
Checked against the Optuna pinned in docker/requirements.lock: `tests/test_optuna_private.py`
fails, naming this module, when another Optuna version is installed or a use here breaks.
"""

from __future__ import annotations

from optuna.storages import RDBStorage

OPTUNA_VERSION = "5.0.0"  # the version these uses were checked against


def stale_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """Running trials of the study whose heartbeat is older than the storage's grace period.

    Why private: Optuna's public `fail_stale_trials` fails these trials itself, and a finished
    trial takes no more user attributes, so the reason ("agent died") could not be recorded on
    it. `RDBStorage._get_stale_trial_ids` is the query `fail_stale_trials` runs first.
    """
    return storage._get_stale_trial_ids(study_id)
