"""Every trial of an Optuna sweep also logged as a W&B run (offline, to sync later, or online).

A wrapper around the sweep the agent works on: it sees each trial handed out, each epoch
reported and each result, and mirrors them into one W&B run per trial (group = sweep id,
job_type and tag = model family, config = the trial's parameters, one `log` per epoch, the
final metrics as summary, pruned runs tagged `pruned`). The agent and the backend are unchanged;
W&B trouble is reported on stderr and never fails a trial.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from kmnist.backends import Sweep, Ticket
from kmnist.errors import UserError
from kmnist.trainer.params import PARAMS
from kmnist.backends.wandb.offline import sweep_dir
from kmnist.backends.wandb.params import flatten
from kmnist.backends.wandb.run import WandbRun

PROJECT = "kmnist-sweep"
# The agent's statuses as W&B runs show them: an Optuna "stopped" trial was pruned.
RUN_STATUS = {"stopped": "pruned"}


class WandbLoggedSweep:
    def __init__(self, sweep: Sweep, mode: str = "offline", project: str = PROJECT) -> None:
        self.sweep, self.mode, self.project = sweep, mode, project
        self.sweep_id = sweep.sweep_id
        self.runs: dict[int, WandbRun] = {}

    def __getattr__(self, name: str) -> Any:  # trials, set_state, spec...: the sweep's own
        return getattr(self.sweep, name)

    def next_trial(self) -> Ticket:
        ticket = self.sweep.next_trial()
        try:
            self.runs[ticket.number] = self._start(ticket)
        except Exception as exc:  # logging is a mirror: the trial runs without it
            _warn(f"trial {ticket.number}: no W&B run ({type(exc).__name__}: {exc})")
        return ticket

    def _start(self, ticket: Ticket) -> WandbRun:
        model = str(_model(ticket.config))
        run = WandbRun(
            ticket.config,
            self.project,
            group=self.sweep_id,
            tags=(model,),
            job_type=model,
            name=f"{self.sweep_id}-trial-{ticket.number}",
            run_dir=sweep_dir(self.sweep_id),
            mode=self.mode,
        )
        run.run.summary.update({"trial": ticket.number, "retry_of": ticket.retry_of})
        return run

    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        run = self.runs.get(ticket.number)
        if run is not None:
            try:
                run.report(epoch, metrics)
            except Exception as exc:
                _warn(f"trial {ticket.number}: W&B log failed ({type(exc).__name__}: {exc})")
        return self.sweep.report(ticket, epoch, metrics)

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        self.sweep.finish(ticket, status, summary, history, reason)
        run = self.runs.pop(ticket.number, None)
        if run is None:
            return
        try:
            run.close(RUN_STATUS.get(status, status), summary, reason)
        except Exception as exc:
            _warn(f"trial {ticket.number}: W&B run not closed ({type(exc).__name__}: {exc})")


def _model(config: Mapping[str, Any]) -> Any:
    try:
        return flatten(config).get("model", PARAMS["model"].default)
    except UserError:
        return PARAMS["model"].default


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)
