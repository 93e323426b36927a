"""The last heartbeat of each running trial on an RDB storage, read from Optuna's own table.

Optuna keeps one heartbeat row per running trial but offers only the ids of stale ones. Telling
alive agents from dead ones (`status`), and catching a trial whose agent died before its first
beat (Optuna's reaper skips those forever), need each trial's age of silence: read here with the
database's clock, the one Optuna's reaper compares against.

The window is Optuna's `heartbeat_interval` and `grace_period`; KMNIST_HEARTBEAT_SECONDS and
KMNIST_HEARTBEAT_GRACE_SECONDS override them (a host that pauses VMs for long wants a longer
grace; tests want a short one).
"""

from __future__ import annotations

import os

from optuna.storages import RDBStorage

from kmnist.backends.optuna import private
from kmnist.errors import UserError

INTERVAL_ENV = "KMNIST_HEARTBEAT_SECONDS"
GRACE_ENV = "KMNIST_HEARTBEAT_GRACE_SECONDS"


def apply_window(storage: RDBStorage) -> None:
    """The heartbeat interval and grace period from the environment, when set there."""
    interval = _seconds(INTERVAL_ENV)
    grace = _seconds(GRACE_ENV)
    if interval is not None:
        storage.heartbeat_interval = max(1, round(interval))
    if grace is not None:
        storage.grace_period = max(1, round(grace))


def interval(storage: RDBStorage) -> float:
    return float(storage.heartbeat_interval or 10)


def grace(storage: RDBStorage) -> float:
    """How long a trial may go without a heartbeat before it is failed and queued again."""
    return float(storage.grace_period or 2 * interval(storage))


def silences(storage: RDBStorage, study_id: int) -> dict[int, float | None]:
    """Seconds since each running trial's last heartbeat, by trial id; None: it never beat."""
    return private.heartbeat_silences(storage, study_id)


def _seconds(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UserError(f"{name}={value!r}: expected a number of seconds above 0")
    return seconds
