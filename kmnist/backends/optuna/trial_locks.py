"""Liveness of running trials on one host: the agent holds an exclusive lock per trial.

The kernel drops an flock when its holder dies, however it dies (kill -9, OOM killer), so any
agent that can take a running trial's lock knows, at once and for certain, that its owner is
gone. The journal storage has no heartbeat (Optuna implements those for RDB storage only); this
is its crash detection.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class TrialLocks:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.held: dict[int, int] = {}  # trial number -> file descriptor

    def hold(self, number: int) -> None:
        """Take the lock of a trial this agent now runs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # Locked before it appears under its name: a reaper never finds the file of a live
        # owner unlocked (it would fail the trial), nor holds it while the owner locks it.
        staging = self.folder / f".{number}.{os.getpid()}"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else holds it
        staging.rename(self._path(number))
        self.held[number] = fd

    def release(self, number: int) -> None:
        fd = self.held.pop(number, None)
        if fd is not None:
            self._path(number).unlink(missing_ok=True)
            os.close(fd)

    def owner_is_dead(self, number: int) -> bool:
        """True if the trial's lock file exists and nobody holds it (its owner died).

        No lock file means the owner has not taken it yet, or finished and removed it; the
        caller decides on those from the trial's state and age.
        """
        if number in self.held:
            return False
        try:
            fd = os.open(self._path(number), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing drops our probe lock too
        return True

    def exists(self, number: int) -> bool:
        """True if the trial's lock file exists (held, or left by a dead owner)."""
        return self._path(number).exists()

    def alive(self, number: int) -> bool:
        """True if some live agent holds the trial's lock."""
        return self.exists(number) and not self.owner_is_dead(number)

    def _path(self, number: int) -> Path:
        return self.folder / f"{number}.lock"
