"""The agent loop: pull a trial, train it in-process, report each epoch, send the result back.

The dataset is loaded once per agent and reused by every trial. A failing trial is recorded with
its reason and the agent goes on, until `max_failures` fail in a row. SIGTERM or Ctrl-C ends the
running trial at its next epoch, records it as interrupted (queued to run again), and exits 0;
a second Ctrl-C exits at once (other agents then find the trial's owner dead and re-queue it).
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


@dataclass
class AgentSummary:
    counts: dict[str, int] = field(default_factory=dict)  # trial status -> how many
    reason: str = ""  # why the agent stopped
    ok: bool = True  # False when it gave up after too many failures in a row

    def line(self) -> str:
        done = ", ".join(f"{n} {status}" for status, n in self.counts.items()) or "no trials"
        return f"{done}; {self.reason}"


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
    ) -> None:
        self.sweep, self.device, self.count = sweep, device, count
        self.max_failures = max_failures
        self.data = data
        self.on_trial = on_trial
        self.stopping = False

    def run(self) -> AgentSummary:
        summary = AgentSummary()
        self.data = self.data or kdata.load()
        previous = self._install_signal_handlers()
        failures_in_a_row = 0
        try:
            while not self.stopping and (
                self.count is None or sum(summary.counts.values()) < self.count
            ):
                try:
                    ticket = self.sweep.next_trial()
                except SweepPaused:
                    time.sleep(PAUSE_POLL_SECONDS)
                    continue
                except SweepDone as done:
                    summary.reason = f"sweep finished: {done}"
                    return summary
                status = self._run_trial(ticket)
                summary.counts[status] = summary.counts.get(status, 0) + 1
                failures_in_a_row = failures_in_a_row + 1 if status == "failed" else 0
                if failures_in_a_row >= self.max_failures:
                    summary.ok = False
                    summary.reason = (
                        f"stopped after {failures_in_a_row} failed trials in a row "
                        "(see `kmnist-sweep leaderboard` for their reasons)"
                    )
                    return summary
            summary.reason = "interrupted" if self.stopping else f"ran --count {self.count}"
            return summary
        finally:
            _restore_signal_handlers(previous)

    def _run_trial(self, ticket: Ticket) -> str:
        try:
            result = train.run(ticket.config, _TrialReporter(self, ticket), self.device, self.data)
        except KeyboardInterrupt:
            self.sweep.finish(ticket, "interrupted", {}, [], "agent interrupted")
            raise
        except UserError as exc:  # a config the trainer refuses (bad parameter combination)
            result = TrialResult("failed", reason=str(exc))
        except Exception as exc:  # any crash of one trial is recorded, not fatal
            result = TrialResult("failed", reason=f"{type(exc).__name__}: {exc}")
        status = result.status
        if self.stopping and status == "stopped":
            status, result.reason = "interrupted", "agent interrupted"
        self.sweep.finish(ticket, status, result.summary, result.history, result.reason)
        if self.on_trial:
            self.on_trial(ticket, result)
        return status

    def _install_signal_handlers(self) -> dict[int, Any]:
        def handle(signum: int, frame: Any) -> None:
            if self.stopping and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: now
            self.stopping = True

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signals cannot be caught here: the caller handles them.
            with contextlib.suppress(ValueError):
                previous[sig] = signal.signal(sig, handle)
        return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
