"""The agent loop: pull a trial, train it in-process, report each epoch, send the result back.

The one loop for every engine (an Optuna study, or W&B's agent behind `WandbSweep`): failure
policy, `--count`, signals and the summary live here once. The dataset is loaded once per
agent, when its first trial arrives, and reused by every trial.

Failures: a trial that fails is recorded with its reason and the agent goes on, until
`max_failures` fail in a row. A trial that fails because of the device (out of memory, a CUDA
error: the trainer marks its result's `device_fault`) is not the trial's fault: it is queued to
run again, so it uses up no run_cap, and the agent stops (exit 1) at once on a device error, or
after `max_memory_failures` out-of-memory trials in a row. A storage that fails under a trial
(a full disk, a database gone) is no trial's fault either: its StorageFault ends the agent
(one line, exit 1) and the sweep leaves the trial to its crash detection, which runs it again.

Stopping: SIGTERM, SIGHUP (a closed terminal) or Ctrl-C end the running trial at its next
epoch, record it as interrupted (queued to run again), and exit 0; a second Ctrl-C exits at once,
the trial still recorded as interrupted and queued again. It interrupts only the training
(data loading included); one that lands in a storage call (handing out the trial, an epoch's
report) takes effect when that call returns, so no trial is left running with no agent.
When no trial is left to start but some still run elsewhere, the agent waits (unless `wait` is
off: `--no-wait`, `--count`): should one of their agents die, its trial comes back, and this
agent runs it. A trial the sweep took back while this agent was stopped (SIGSTOP, a paused VM)
is dropped with one line, and the agent goes on. However the loop ends, the sweep is closed.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kmnist.backends import (
    SweepDone,
    SweepDraining,
    SweepPaused,
    Ticket,
    TrialLost,
    WorkerSweep,
)
from kmnist.contract import TrialResult
from kmnist.errors import StorageFault, UserError
from kmnist.masking import mask
from kmnist.trainer import data as kdata
from kmnist.trainer import train
from kmnist.trainer.faults import device_fault, faulted

PAUSE_POLL_SECONDS = 5.0
STOP_POLL_SECONDS = 0.2  # a paused agent looks at its stop flag this often
# Signals that end the agent after the running trial's next epoch; SIGINT twice: at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Below the engine's 3 retries of a trial: an agent whose device runs out of memory on every
# trial stops before any of them is failed for good (counted against run_cap).
MAX_MEMORY_FAILURES = 3


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class AgentSummary:
    counts: dict[str, int] = field(default_factory=dict)  # trial status -> how many
    reason: str = ""  # why the agent stopped
    ok: bool = True  # False when it gave up after too many failures in a row

    def line(self) -> str:
        done = ", ".join(f"{n} {status}" for status, n in self.counts.items()) or "no trials"
        return f"{done}; {self.reason}"

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def ran(self) -> int:
        """Trials this agent took to the end (a dropped one was not its to finish)."""
        return sum(n for status, n in self.counts.items() if status != "lost")


@dataclass
class _Streak:
    """Failures in a row, by kind: a trial's own, and its device running out of memory."""

    failed: int = 0
    memory: int = 0


class _TrialReporter:
    """Forwards epochs to the sweep; answers stop when the sweep prunes or the agent stops."""

    def __init__(self, agent: Agent, ticket: Ticket) -> None:
        self.agent, self.ticket = agent, ticket

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        with self.agent.interrupts(allowed=False):
            prune = self.agent.sweep.report(self.ticket, epoch, metrics)
        return prune or self.agent.stopping


class Agent:
    def __init__(
        self,
        sweep: WorkerSweep,
        device: str | None = None,
        count: int | None = None,
        max_failures: int = 5,
        data: kdata.Kmnist | None = None,
        on_trial: Callable[[Ticket, TrialResult], None] | None = None,
        keep: Callable[[Ticket, TrialResult], None] | None = None,
        wait: bool = True,
        say: Callable[[str], None] = _stderr,
        max_memory_failures: int = MAX_MEMORY_FAILURES,
    ) -> None:
        self.sweep, self.device, self.count = sweep, device, count
        self.max_failures = max_failures
        self.max_memory_failures = max_memory_failures
        self.data = data
        self.on_trial = on_trial
        self.keep = keep  # stores a trial's outputs before its result is sent
        self.wait = wait  # for trials running elsewhere, when none is left to start
        self.say = say  # lines shown even with --quiet: why a trial was dropped, waiting
        self.stopping = False
        self.stopped_by: int | None = None  # the signal that is ending the agent
        self.hurry = False  # a second Ctrl-C: end the running trial now, not at its next epoch
        self._interruptible = False  # may a second Ctrl-C raise KeyboardInterrupt right now?

    def run(self) -> AgentSummary:
        summary = AgentSummary()
        previous = self._install_signal_handlers()
        try:
            self._loop(summary)
            if self.hurry:  # a second Ctrl-C outside training: the trial is recorded, now exit
                raise KeyboardInterrupt
        finally:
            _restore_signal_handlers(previous)
            self.sweep.close()
        return summary

    def _loop(self, summary: AgentSummary) -> None:
        streak = _Streak()
        waiting_for = ""  # what the agent said it waits for, said once
        while not self.stopping and not self._ran_count(summary):
            try:
                ticket = self.sweep.next_trial()
            except SweepDraining as draining:
                if not self.wait:
                    summary.reason = f"sweep finished: {draining} (not waiting for them)"
                    return
                if str(draining) != waiting_for:
                    waiting_for = str(draining)
                    self.say(f"{draining}: waiting, should their agents die (--no-wait exits now)")
                self._sleep(PAUSE_POLL_SECONDS)
                continue
            except SweepPaused:
                self._sleep(PAUSE_POLL_SECONDS)
                continue
            except SweepDone as done:
                summary.reason = f"sweep finished: {done}"
                return
            waiting_for = ""
            result = self._run_trial(ticket)
            summary.add(result.status)
            if why := self._give_up(streak, result):
                summary.ok, summary.reason = False, why
                return
        summary.reason = self._why_stopped()

    def _give_up(self, streak: _Streak, result: TrialResult) -> str:
        """Why the agent must stop after this trial, or "" to go on."""
        kind = result.device_fault
        streak.failed = streak.failed + 1 if result.status == "failed" else 0
        streak.memory = streak.memory + 1 if kind == "memory" else 0
        where = self.device or "the default device"
        if kind == "device":
            why = result.reason.strip().splitlines()[0]
            return f"stopped: {where} failed ({why}); the trial is queued to run again"
        if streak.memory >= self.max_memory_failures:
            return (
                f"stopped: {streak.memory} trials in a row ran out of memory on {where}; "
                "they are queued to run again (free the device, or give this agent a larger one)"
            )
        if streak.failed >= self.max_failures:
            return (
                f"stopped after {streak.failed} failed trials in a row "
                "(see `kmnist-sweep leaderboard` for their reasons)"
            )
        return ""

    def _ran_count(self, summary: AgentSummary) -> bool:
        return self.count is not None and summary.ran >= self.count

    def _why_stopped(self) -> str:
        if not self.stopping:
            return f"ran --count {self.count}"
        if self.stopped_by is None:
            return "interrupted"
        return f"interrupted by {signal.Signals(self.stopped_by).name}"

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(STOP_POLL_SECONDS)

    def _run_trial(self, ticket: Ticket) -> TrialResult:
        """Train and record one trial; its result (status "lost": dropped here)."""
        if ticket.refused:  # the engine knows it cannot run: recorded, never trained
            result = TrialResult("failed", reason=ticket.refused)
        elif self.stopping:  # stopped while the trial was handed out: give it back untrained
            result = TrialResult("interrupted", reason="agent interrupted")
        else:
            result = self._train(ticket)
        if result.status == "failed" and result.device_fault:
            result.status = "interrupted"  # the device failed, not the trial: run it again
        if self.stopping and result.status == "stopped":
            result.status, result.reason = "interrupted", "agent interrupted"
        if self.keep:
            self.keep(ticket, result)
        try:
            self.sweep.finish(ticket, result.status, result.summary, result.history, result.reason)
        except TrialLost as lost:
            self.say(mask(str(lost)))
            return TrialResult("lost", reason=str(lost))
        if self.on_trial:
            self.on_trial(ticket, result)
        return result

    def _train(self, ticket: Ticket) -> TrialResult:
        try:
            with self.interrupts(allowed=True):
                self.data = self.data or kdata.load()
                return train.run(
                    ticket.config, _TrialReporter(self, ticket), self.device, self.data
                )
        except KeyboardInterrupt:
            self.sweep.finish(ticket, "interrupted", {}, [], "agent interrupted")
            raise
        except TrialLost as lost:  # taken back while this agent was stopped: finish drops it
            return TrialResult("interrupted", reason=str(lost))
        except StorageFault:  # the storage failed under the trial, not the trial: stop here
            raise
        except UserError as exc:
            if self.data is None:  # no data for any trial: give this one back, and stop
                self.sweep.finish(ticket, "interrupted", {}, [], "agent could not load the data")
                raise
            # a config the trainer refuses (bad parameter combination)
            return TrialResult("failed", reason=mask(str(exc)))
        except Exception as exc:  # any crash of one trial is recorded, not fatal
            if kind := device_fault(exc):  # out of memory loading the data, before the trainer
                return faulted(kind, self.device, exc)
            return TrialResult("failed", reason=mask(f"{type(exc).__name__}: {exc}"))

    @contextlib.contextmanager
    def interrupts(self, allowed: bool) -> Iterator[None]:
        """Within, a second Ctrl-C raises KeyboardInterrupt at once (allowed) or is held until
        the enclosing region that allows it resumes (a storage call must not be cut in two)."""
        outer, self._interruptible = self._interruptible, allowed
        try:
            self._raise_if_hurried()
            yield
        finally:
            self._interruptible = outer
        self._raise_if_hurried()

    def _raise_if_hurried(self) -> None:
        if self.hurry and self._interruptible:
            self._interruptible = False  # once: recording the interruption is not cut short
            raise KeyboardInterrupt

    def _install_signal_handlers(self) -> dict[int, Any]:
        def handle(signum: int, frame: Any) -> None:
            if self.stopping and signum == signal.SIGINT:
                self.hurry = True  # second Ctrl-C: now, or as soon as a storage call returns
                self._raise_if_hurried()
                return
            self.stopping = True
            self.stopped_by = self.stopped_by or signum

        previous = {}
        for sig in STOP_SIGNALS:
            # Outside the main thread signals cannot be caught here: the caller handles them.
            with contextlib.suppress(ValueError):
                previous[sig] = signal.signal(sig, handle)
        return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
