"""Which running trials still have a live agent, and what happens to those that do not.

On a journal file each running trial is held by an exclusive file lock of its agent: a free
lock is a dead agent, known at once and for certain, on this host. On a database the agent's
heartbeat thread beats while the trial runs; a trial silent past the grace period is dead, on
any host. The reaper fails a dead trial ("agent died") and queues its config to run again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from pathlib import Path

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends.optuna import heartbeats
from kmnist.backends.optuna.storage import GRACE_SECONDS, journal_path
from kmnist.backends.optuna.stored import StoredSweep, answers
from kmnist.backends.optuna.trial_locks import TrialLocks


class Liveness:
    """Trial locks, heartbeats and the reaper of one sweep."""

    def __init__(self, stored: StoredSweep) -> None:
        self.stored, self.url = stored, stored.url
        folder = journal_path(stored.url)
        self.locks = TrialLocks(Path(f"{folder}.locks") / stored.sweep_id) if folder else None
        self.lock_grace: float = GRACE_SECONDS  # running this long with no lock: owner gone
        self._heartbeats: dict[int, threading.Event] = {}
        self._unbeaten: dict[int, float] = {}  # trial number -> when first seen running, unbeaten
        self._database = isinstance(stored.storage, RDBStorage)
        if self._database:
            heartbeats.apply_window(stored.storage)

    # -- this agent's trials -----------------------------------------------------------------
    def check_writable(self) -> None:
        """Before a trial exists that could not be locked."""
        if self.locks:
            self.locks.check_writable()

    def hold(self, number: int) -> None:
        """Claim a trial just asked for, at once: until its lock or first heartbeat exists, a
        trial whose agent dies is invisible to a heartbeat reaper and waits out the grace
        period for a lock reaper."""
        if self.locks:
            self.locks.hold(number)
        self._start_heartbeat(number)

    def let_go(self, number: int, told: bool) -> None:
        """This agent is done with the trial: its heartbeat stops and its lock is freed. The
        lock file of a trial told its end goes (after tell: a reaper never sees it running);
        that of one given up untold stays, free, so the next reaper runs it again at once."""
        stop = self._heartbeats.pop(number, None)
        if stop:
            stop.set()
        if self.locks and told:
            self.locks.release(number)
        elif self.locks:
            self.locks.drop(number)

    def _start_heartbeat(self, number: int) -> None:
        """RDB storage only: beat while the trial runs, so other hosts can tell it is alive."""
        if not self._database:
            return
        storage, stop = self.stored.storage, threading.Event()
        self._heartbeats[number] = stop
        trial_id = self.stored.trial_id(number)

        def beat() -> None:
            while not stop.wait(heartbeats.interval(storage)):
                # The database away for a moment: the next beat tries again (past the grace
                # period the trial is failed and queued again, and this agent drops it).
                with contextlib.suppress(Exception):
                    storage.record_heartbeat(trial_id)

        storage.record_heartbeat(trial_id)
        threading.Thread(target=beat, daemon=True, name=f"heartbeat-{number}").start()

    # -- everyone's trials -------------------------------------------------------------------
    @answers
    def reap_dead_trials(self) -> list[int]:
        """Fail the running trials whose agent died, and queue each to run again."""
        limit = heartbeats.grace(self.stored.storage) if self._database else 0.0
        # Optuna's fail_stale_trials, but through _fail_dead so the reason is recorded, and
        # also for a trial whose agent died before its first heartbeat (Optuna skips those).
        dead = [t for t, silent in self._silences() if silent > limit]
        return [t.number for t in dead if self._fail_dead(t)]

    @answers
    def dead_trials(self) -> dict[int, str]:
        """Running trials whose agent looks dead: number -> why, in a few words."""
        if not self._database:
            return {t.number: "its agent holds no trial lock" for t, _ in self._silences()}
        alive_within = 2 * heartbeats.interval(self.stored.storage) + 1
        grace = heartbeats.grace(self.stored.storage)
        return {
            t.number: f"no heartbeat for {silent:.0f} s, queued again after {grace:.0f} s"
            for t, silent in self._silences()
            if silent > alive_within
        }

    def _silences(self) -> list[tuple[FrozenTrial, float]]:
        """Running trials whose agent is not known alive, with how long each has been silent:
        seconds since its heartbeat (RDB), or inf for a free lock (journal)."""
        running = self.stored.running()
        if self._database:
            beats = heartbeats.silences(self.stored.storage, self.stored.study_id)
            return [
                (t, self._silence(t, beats.get(self.stored.trial_id(t.number)))) for t in running
            ]
        if self.locks is not None:
            return [(t, float("inf")) for t in running if self._owner_is_dead(t)]
        return []

    def _silence(self, trial: FrozenTrial, since_beat: float | None) -> float:
        """Seconds since the trial's heartbeat; with none yet, since this process first saw
        it so (its start time is another host's clock: no use for a deadline here)."""
        if since_beat is not None:
            return since_beat
        first = self._unbeaten.setdefault(trial.number, time.monotonic())
        return time.monotonic() - first

    def _owner_is_dead(self, trial: FrozenTrial) -> bool:
        assert self.locks is not None
        if self.locks.owner_is_dead(trial.number):
            return True
        # An agent killed between asking for its trial and locking it leaves no lock file;
        # a live one locks it within milliseconds (journal times are local and naive).
        start = trial.datetime_start or dt.datetime.now()
        age = (dt.datetime.now() - start).total_seconds()
        return age > self.lock_grace and not self.locks.exists(trial.number)

    def _fail_dead(self, trial: FrozenTrial) -> bool:
        storage, trial_id = self.stored.storage, self.stored.trial_id(trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "failure_reason", "agent died")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except RuntimeError:  # it finished meanwhile (UpdateFinishedTrialError)
            return False
        self.stored.retry(trial.number)
        return True
