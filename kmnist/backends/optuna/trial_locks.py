"""Liveness of running trials on one host: the agent holds an exclusive lock per trial.

The kernel drops an flock when its holder dies, however it dies (kill -9, OOM killer), so any
agent that can take a running trial's lock knows, at once and for certain, that its owner is
gone. The journal storage has no heartbeat (Optuna implements those for RDB storage only); this
is its crash detection.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from kmnist.errors import StorageFault, UserError


class TrialLocks:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.held: dict[int, int] = {}  # trial number -> file descriptor
        self._writable = False

    def check_writable(self) -> None:
        """UserError (or StorageFault, disk full) unless lock files can be made here; once."""
        if self._writable:
            return
        probe = self.folder / f".probe.{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.close(os.open(probe, os.O_RDWR | os.O_CREAT, 0o644))
            probe.unlink()
        except OSError as exc:
            raise self._fault(exc) from None
        self._writable = True

    def hold(self, number: int) -> None:
        """Take the lock of a trial this agent now runs."""
        # Locked before it appears under its name: a reaper never finds the file of a live
        # owner unlocked (it would fail the trial), nor holds it while the owner locks it.
        staging = self.folder / f".{number}.{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(staging, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else holds it
            staging.rename(self._path(number))
        except OSError as exc:
            raise self._fault(exc) from None
        self.held[number] = fd

    def _fault(self, exc: OSError) -> Exception:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFault(f"cannot write trial lock files in {self.folder}: {reason}")
        return UserError(
            f"cannot write trial lock files in {self.folder}: {reason}; agents on this storage "
            "need that folder writable (it lies beside the journal file)"
        )

    def release(self, number: int) -> None:
        fd = self.held.pop(number, None)
        if fd is not None:
            self._path(number).unlink(missing_ok=True)
            os.close(fd)

    def drop(self, number: int) -> None:
        """Give a trial up unfinished: its lock is freed but its file stays, so the next reaper
        finds its owner gone at once, as if this agent had died."""
        fd = self.held.pop(number, None)
        if fd is not None:
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
