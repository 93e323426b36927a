"""The last heartbeat of each running trial on an RDB storage, read from Optuna's own table.

Optuna keeps one heartbeat row per running trial but offers only the ids of stale ones. Telling
alive agents from dead ones (`status`), and catching a trial whose agent died before its first
beat (Optuna's reaper skips those forever), need each trial's age of silence: read here with the
database's clock, the one Optuna's reaper compares against.

The window is Optuna's `heartbeat_interval` and `grace_period`; KMNIST_HEARTBEAT_SECONDS and
KMNIST_HEARTBEAT_GRACE_SECONDS override them (a host that pauses VMs for long wants a longer
grace; tests want a short one). Each must be a finite number of seconds in its range: `inf` or
`1e30` would overflow the heartbeat thread's wait and kill it, so the trial would run with none.
"""

from __future__ import annotations

import math
import os

from optuna.storages import RDBStorage

from kmnist.backends.optuna import private
from kmnist.errors import UserError

INTERVAL_ENV = "KMNIST_HEARTBEAT_SECONDS"
GRACE_ENV = "KMNIST_HEARTBEAT_GRACE_SECONDS"
RANGES = {INTERVAL_ENV: (1, 3600), GRACE_ENV: (1, 7 * 24 * 3600)}  # seconds; a week of grace


def window() -> tuple[int | None, int | None]:
    """(interval, grace) from the environment, None where unset; UserError for a bad value."""
    return _seconds(INTERVAL_ENV), _seconds(GRACE_ENV)


def apply_window(storage: RDBStorage) -> None:
    """The heartbeat interval and grace period from the environment, when set there."""
    interval, grace = window()
    if interval is not None:
        storage.heartbeat_interval = interval
    if grace is not None:
        storage.grace_period = grace


def interval(storage: RDBStorage) -> float:
    return float(storage.heartbeat_interval or 10)


def grace(storage: RDBStorage) -> float:
    """How long a trial may go without a heartbeat before it is failed and queued again."""
    return float(storage.grace_period or 2 * interval(storage))


def silences(storage: RDBStorage, study_id: int) -> dict[int, float | None]:
    """Seconds since each running trial's last heartbeat, by trial id; None: it never beat."""
    return private.heartbeat_silences(storage, study_id)


def _seconds(name: str) -> int | None:
    """The variable's whole seconds; a value outside its range (nan, inf, abc) is refused."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    low, high = RANGES[name]
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not low <= seconds <= high:  # false for nan too
        raise UserError(
            f"{name}={value!r}: expected a number of seconds from {low} to {high}; "
            f"unset it for the default"
        )
    return round(seconds)
