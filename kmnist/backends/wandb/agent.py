"""The agent for a W&B sweep: `wandb.agent` hands out runs, they train here, in-process.

W&B's agent loop calls `WandbAgent.run_one` in a fresh thread for each run, with the run's
parameters in the file named by WANDB_SWEEP_PARAM_PATH. The data is loaded once per agent.

Stopping, as W&B's agent does it: a stop request (hyperband) is an exception raised inside the
run's thread; the run then ends as stopped (exit 0, tag `stopped`), not crashed. SIGTERM or
Ctrl-C (preemption) make W&B's loop stop its run the same way and return; that run is marked
preempting and exits non-zero, so the sweep requeues it. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kmnist.trainer import data as kdata
from kmnist.trainer import train
from kmnist.agent.loop import AgentSummary
from kmnist.backends.wandb import backend as wandb_backend
from kmnist.backends.wandb.backend import SweepPath
from kmnist.errors import UserError
from kmnist.trainer.params import relevant, resolve
from kmnist.backends.wandb.params import flatten, sweep_params
from kmnist.backends.wandb.run import WandbRun

OnRun = Callable[[str, str, dict[str, Any], str], None]  # run id, status, summary, reason


@dataclass
class _Run:
    wandb_run: WandbRun | None = None
    status: str | None = None  # set once the W&B run is closed
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class WandbAgent:
    def __init__(
        self,
        path: SweepPath,
        device: str | None = None,
        count: int | None = None,
        max_failures: int = 5,
        data: kdata.Kmnist | None = None,
        on_run: OnRun | None = None,
    ) -> None:
        self.path, self.device, self.count = path, device, count
        self.max_failures, self.data, self.on_run = max_failures, data, on_run
        self.summary = AgentSummary()
        self.preempted_by: int | None = None  # the signal that is ending this agent
        self.giving_up = False
        self._failures_in_a_row = 0

    def run(self) -> AgentSummary:
        self.data = self.data or kdata.load()
        previous = self._install_signal_handlers()
        try:
            wandb_backend.run_agent(self.path, self.run_one, self.count)
        except KeyboardInterrupt:  # a signal outside W&B's loop, or a second Ctrl-C
            if not self.giving_up:
                self.preempted_by = self.preempted_by or signal.SIGINT
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.summary.reason = self.summary.reason or self._why_done()
        return self.summary

    def _why_done(self) -> str:
        if self.preempted_by is not None:
            name = signal.Signals(self.preempted_by).name
            return f"interrupted by {name} (a running run was marked preempting: W&B requeues it)"
        ran = sum(self.summary.counts.values())
        if self.count is not None and ran >= self.count:
            return f"ran --count {self.count}"
        return "W&B's agent returned (the sweep is finished, paused or stopped)"

    # -- one run, in the thread W&B's agent made for it ------------------------------------
    def run_one(self) -> None:
        run = _Run()
        try:
            self._train(run)
        except Exception as exc:  # W&B's stop request arrives as an exception raised in here
            self._end_early(run, exc)
        self._tally(run)

    def _train(self, run: _Run) -> None:
        params = sweep_params() or {}
        try:
            config = resolve(flatten(params))
        except UserError as exc:  # the sweep hands out a config the trainer refuses
            run.wandb_run = WandbRun({}, project=None, tags=("invalid",))
            self._close(run, "failed", {}, str(exc))
            return
        model = config["model"]
        run.wandb_run = WandbRun(relevant(config), project=None, group=model, tags=(model,))
        result = train.run(config, run.wandb_run, self.device, self.data)
        self._close(run, result.status, result.summary, result.reason)

    def _end_early(self, run: _Run, exc: Exception) -> None:
        if run.status is not None:
            return  # the run was already closed: the exception came after
        if self.preempted_by is not None:
            code = 128 + self.preempted_by
            reason = f"agent stopped by {signal.Signals(self.preempted_by).name}"
            self._close(run, "interrupted", {}, reason, preempting=True, exit_code=code)
        elif _is_stop_request(exc):
            self._close(run, "stopped", {})
        else:
            self._close(run, "failed", {}, f"{type(exc).__name__}: {exc}")

    def _close(self, run: _Run, status: str, summary: dict[str, Any], reason: str = "",
               **how: Any) -> None:  # fmt: skip
        run.status, run.summary, run.reason = status, summary, reason
        if run.wandb_run is not None:
            run.wandb_run.close(status, summary, reason, **how)

    def _tally(self, run: _Run) -> None:
        status = run.status or "interrupted"
        self.summary.counts[status] = self.summary.counts.get(status, 0) + 1
        if self.on_run and run.wandb_run is not None:
            summary = run.summary or run.wandb_run.last
            self.on_run(run.wandb_run.run.id, status, summary, run.reason)
        self._failures_in_a_row = self._failures_in_a_row + 1 if status == "failed" else 0
        if self._failures_in_a_row >= self.max_failures and not self.giving_up:
            self.giving_up = True
            self.summary.ok = False
            self.summary.reason = f"stopped after {self._failures_in_a_row} failed runs in a row"
            _thread.interrupt_main()  # W&B's loop ends on KeyboardInterrupt in the main thread

    # -- signals -----------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        def handle(signum: int, frame: Any) -> None:
            if self.preempted_by is None and not self.giving_up:
                self.preempted_by = signum
            raise KeyboardInterrupt  # W&B's loop stops its run (raising into it) and returns

        if threading.current_thread() is not threading.main_thread():
            return {}  # signals reach the main thread only: its owner handles them
        return {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}


def _is_stop_request(exc: Exception) -> bool:
    """W&B's agent stops a function run by raising a bare `Exception()` in its thread."""
    return type(exc) is Exception and not exc.args
