"""The agent loop: pull a trial, train it in-process, report each epoch, send the result back.

The one loop for every engine (an Optuna study, or W&B's agent behind `WandbSweep`): failure
policy, `--count`, signals and the summary live here once. The dataset is loaded once per
agent, when its first trial arrives, and reused by every trial. A failing trial is recorded with
its reason and the agent goes on, until `max_failures` fail in a row. SIGTERM or Ctrl-C ends
the running trial at its next epoch, records it as interrupted (queued to run again), and
exits 0; a second Ctrl-C exits at once (other agents then find the trial's owner dead and
re-queue it). However the loop ends, the sweep is closed.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kmnist.backends import Sweep, SweepDone, SweepPaused, Ticket
from kmnist.contract import TrialResult
from kmnist.errors import UserError
from kmnist.trainer import data as kdata
from kmnist.trainer import train

PAUSE_POLL_SECONDS = 5.0
STOP_POLL_SECONDS = 0.2  # a paused agent looks at its stop flag this often


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


class _TrialReporter:
    """Forwards epochs to the sweep; answers stop when the sweep prunes or the agent stops."""

    def __init__(self, agent: Agent, ticket: Ticket) -> None:
        self.agent, self.ticket = agent, ticket

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        prune = self.agent.sweep.report(self.ticket, epoch, metrics)
        return prune or self.agent.stopping


class Agent:
    def __init__(
        self,
        sweep: Sweep,
        device: str | None = None,
        count: int | None = None,
        max_failures: int = 5,
        data: kdata.Kmnist | None = None,
        on_trial: Callable[[Ticket, TrialResult], None] | None = None,
        keep: Callable[[Ticket, TrialResult], None] | None = None,
    ) -> None:
        self.sweep, self.device, self.count = sweep, device, count
        self.max_failures = max_failures
        self.data = data
        self.on_trial = on_trial
        self.keep = keep  # stores a trial's outputs before its result is sent
        self.stopping = False
        self.stopped_by: int | None = None  # the signal that is ending the agent

    def run(self) -> AgentSummary:
        summary = AgentSummary()
        previous = self._install_signal_handlers()
        try:
            self._loop(summary)
        finally:
            _restore_signal_handlers(previous)
            self.sweep.close()
        return summary

    def _loop(self, summary: AgentSummary) -> None:
        failures_in_a_row = 0
        while not self.stopping and not self._ran_count(summary):
            try:
                ticket = self.sweep.next_trial()
            except SweepPaused:
                self._sleep(PAUSE_POLL_SECONDS)
                continue
            except SweepDone as done:
                summary.reason = f"sweep finished: {done}"
                return
            status = self._run_trial(ticket)
            summary.add(status)
            failures_in_a_row = failures_in_a_row + 1 if status == "failed" else 0
            if failures_in_a_row >= self.max_failures:
                summary.ok = False
                summary.reason = (
                    f"stopped after {failures_in_a_row} failed trials in a row "
                    "(see `kmnist-sweep leaderboard` for their reasons)"
                )
                return
        summary.reason = self._why_stopped()

    def _ran_count(self, summary: AgentSummary) -> bool:
        return self.count is not None and sum(summary.counts.values()) >= self.count

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

    def _run_trial(self, ticket: Ticket) -> str:
        if ticket.refused:  # the engine knows it cannot run: recorded, never trained
            result = TrialResult("failed", reason=ticket.refused)
        else:
            result = self._train(ticket)
        if self.stopping and result.status == "stopped":
            result.status, result.reason = "interrupted", "agent interrupted"
        if self.keep:
            self.keep(ticket, result)
        self.sweep.finish(ticket, result.status, result.summary, result.history, result.reason)
        if self.on_trial:
            self.on_trial(ticket, result)
        return result.status

    def _train(self, ticket: Ticket) -> TrialResult:
        try:
            self.data = self.data or kdata.load()
            return train.run(ticket.config, _TrialReporter(self, ticket), self.device, self.data)
        except KeyboardInterrupt:
            self.sweep.finish(ticket, "interrupted", {}, [], "agent interrupted")
            raise
        except UserError as exc:
            if self.data is None:  # no data for any trial: give this one back, and stop
                self.sweep.finish(ticket, "interrupted", {}, [], "agent could not load the data")
                raise
            # a config the trainer refuses (bad parameter combination)
            return TrialResult("failed", reason=str(exc))
        except Exception as exc:  # any crash of one trial is recorded, not fatal
            return TrialResult("failed", reason=f"{type(exc).__name__}: {exc}")

    def _install_signal_handlers(self) -> dict[int, Any]:
        def handle(signum: int, frame: Any) -> None:
            if self.stopping and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: now
            self.stopping = True
            self.stopped_by = self.stopped_by or signum

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signals cannot be caught here: the caller handles them.
            with contextlib.suppress(ValueError):
                previous[sig] = signal.signal(sig, handle)
        return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
