"""Every trial of an Optuna sweep also logged as a W&B run (offline, to sync later, or online).

A wrapper around the sweep the agent works on: it sees each trial handed out, each epoch
reported and each result, and mirrors them into one W&B run per trial (group = sweep id,
job_type and tag = model family, config = the trial's parameters, one `log` per epoch, the
final metrics as summary, pruned runs tagged `pruned`). The agent and the backend are unchanged;
W&B trouble is reported on stderr and never fails a trial. A disk with no room for the runs is
no trial's trouble but a stop: one line before the agent takes its first trial (exit 2), or,
once it filled meanwhile, a StorageFault (exit 1) before the next, or as a run is closed cut
short (its trial's result is recorded first).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from kmnist.backends import Ticket, TrialLost, WorkerSweep
from kmnist.backends.wandb import auth as wandb_auth
from kmnist.backends.wandb import run_files
from kmnist.backends.wandb.offline import sweep_dir
from kmnist.backends.wandb.params import model_family
from kmnist.backends.wandb.run import TrialRuns
from kmnist.errors import StorageFault, UserError
from kmnist.masking import mask

PROJECT = "kmnist-sweep"
# The agent's statuses as W&B runs show them: an Optuna "stopped" trial was pruned.
RUN_STATUS = {"stopped": "pruned"}


def logged(sweep: WorkerSweep, mode: str) -> WorkerSweep:
    """The sweep, wrapped to log every trial as a W&B run unless mode is off."""
    if mode == "off":
        return sweep
    if mode == "online":
        wandb_auth.require("use --wandb offline and `kmnist-sweep sync` later")
    return WandbLoggedSweep(sweep, mode)


class WandbLoggedSweep:
    def __init__(self, sweep: WorkerSweep, mode: str = "offline", project: str = PROJECT) -> None:
        self.sweep = sweep
        self.sweep_id = sweep.sweep_id
        self.run_dir = sweep_dir(self.sweep_id)
        run_files.require_room(self.run_dir)  # before the agent takes a trial
        self.runs = TrialRuns(project=project, run_dir=self.run_dir, mode=mode)

    def __getattr__(self, name: str) -> Any:  # goal, score, attach, close...: the sweep's
        return getattr(self.sweep, name)

    def next_trial(self) -> Ticket:
        try:
            run_files.require_room(self.run_dir)  # filled since: stop before taking a trial
        except UserError as exc:
            raise StorageFault(str(exc)) from None
        ticket = self.sweep.next_trial()
        _mirror(ticket, "no W&B run", self._start, ticket)
        return ticket

    def _start(self, ticket: Ticket) -> None:
        run = self.runs.start(
            ticket,
            ticket.config,
            model_family(ticket.config),
            group=self.sweep_id,
            name=f"{self.sweep_id}-trial-{ticket.number}",
        )
        run.run.summary.update({"trial": ticket.number, "retry_of": ticket.retry_of})

    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        _mirror(ticket, "W&B log failed", self.runs.report, ticket, epoch, metrics)
        return self.sweep.report(ticket, epoch, metrics)

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        try:
            self.sweep.finish(ticket, status, summary, history, reason)
        except TrialLost as lost:  # another agent runs it now: this run ends as interrupted
            status, reason = "interrupted", str(lost)
            raise
        finally:
            shown = RUN_STATUS.get(status, status)
            _mirror(ticket, "W&B run not closed", self.runs.close, ticket, shown, summary, reason)


def _mirror(ticket: Ticket, what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn`; W&B trouble is a warning: the mirror never fails the trial."""
    try:
        fn(*args)
    except StorageFault:  # the disk under the runs is full: the agent stops with it
        raise
    except Exception as exc:
        warning = f"warning: trial {ticket.number}: {what} ({type(exc).__name__}: {exc})"
        print(mask(warning), file=sys.stderr)
