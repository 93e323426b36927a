"""A W&B sweep as a `Sweep`: W&B's agent hands out the runs, the project's one agent loop
trains them in-process.

`wandb.agent(function=...)` runs in a background thread. For each run W&B's loop starts a
thread, sets WANDB_SWEEP_PARAM_PATH, WANDB_RUN_ID and WANDB_SWEEP_ID, and calls `_hand_out`,
which passes the run's parameters to `next_trial` through a queue and then waits. `next_trial`
opens the W&B run (wandb.init reads the ids W&B set, while `_hand_out` keeps them set) and
returns it as a ticket; `report` logs one `wandb.log` per epoch; `finish` closes the run. The
waiting `_hand_out` returns only when the agent asks for its next trial or closes the sweep,
so W&B's loop never starts a run the agent will not train.

Stopping, as W&B's agent does it: W&B stops a function run by raising a bare `Exception()` in
its thread (hyperband, or a stop from W&B's UI). It lands in the waiting `_hand_out`, which
turns it into a flag `report` returns: the trial ends at its next epoch, and its run as
stopped (exit 0, tag `stopped`), not crashed. An interrupted trial (SIGTERM, Ctrl-C) is closed
as preempting with a non-zero exit code, so W&B requeues it for another agent.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmnist.backends import SweepDone, SweepPaused, Ticket
from kmnist.backends.wandb import auth as wandb_auth
from kmnist.backends.wandb.backend import SweepPath, run_agent
from kmnist.backends.wandb.params import model_family, sweep_params
from kmnist.backends.wandb.run import TrialRuns
from kmnist.errors import UserError
from kmnist.sweep import objective
from kmnist.trainer.params import relevant, resolve

HANDOFF_WAIT_SECONDS = 2.0  # next_trial waits this long for W&B, then says "paused"
POLL_SECONDS = 0.1  # how often a waiting run thread looks up: W&B's stop lands between looks
CLOSE_WAIT_SECONDS = 15.0  # W&B's idle loop sleeps 5 s at a time, then tears down


@dataclass
class _Handoff:
    """One run W&B started, between its thread and the agent's."""

    params: dict[str, Any] | None = None
    refused: str = ""  # why the run cannot be trained (its parameters could not be read)
    stop: threading.Event = field(default_factory=threading.Event)  # W&B asked it to stop
    released: threading.Event = field(default_factory=threading.Event)  # its thread may return
    queued: bool = False
    taken: bool = False


@dataclass
class _AgentEnded:
    """W&B's agent returned (error: the UserError it ended with)."""

    error: UserError | None = None


class WandbSweep:
    """A sweep on W&B's server, named by its `entity/project/id` path: the worker face only
    (W&B's UI and `wandb sweep --pause|--resume|--stop` are its control face)."""

    holds_artifacts = True  # each trial's files become an artifact of its W&B run

    def __init__(self, path: SweepPath) -> None:
        self.path = path
        self.sweep_id = str(path)
        self.runs = TrialRuns(project=None)  # None: the sweep's project, which W&B's agent set
        self._handoffs: queue.Queue[_Handoff | _AgentEnded] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._current: _Handoff | None = None  # taken by the agent, held until its next ask
        self._ended = threading.Event()  # W&B's agent returned
        self._closed = threading.Event()
        self._count = 0
        self._config: dict[str, Any] | None = None  # the sweep's config, once read

    @classmethod
    def parse(cls, text: str) -> WandbSweep:
        return cls(SweepPath.parse(text))

    # -- handing out trials (the agent's thread) ---------------------------------------------
    def next_trial(self) -> Ticket:
        self._release_current()
        self._start()
        handoff = self._next_handoff()
        ticket = Ticket(self._count, {}, handoff)
        self._count += 1
        self._current = handoff
        self._open_run(ticket, handoff)
        return ticket

    def _start(self) -> None:
        if self._thread is not None:
            return
        wandb_auth.require("use `kmnist-sweep agent` with an Optuna sweep id to work offline")
        # A daemon: should W&B's loop ever not end, it never keeps the process alive.
        self._thread = threading.Thread(target=self._agent_loop, name="wandb-agent", daemon=True)
        self._thread.start()

    def _next_handoff(self) -> _Handoff:
        deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
        while True:
            try:
                item = self._handoffs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SweepPaused("waiting for W&B to hand out a run") from None
            if isinstance(item, _AgentEnded):
                self._handoffs.put(item)  # every later ask gets the same answer
                if item.error is not None:
                    raise item.error
                raise SweepDone("W&B's agent returned (the sweep is finished or stopped)")
            if item.taken:
                continue  # handed over twice (see _hand_out)
            item.taken = True
            if item.stop.is_set():  # W&B stopped the run before it started
                item.released.set()
                continue
            return item

    def _open_run(self, ticket: Ticket, handoff: _Handoff) -> None:
        params = handoff.params or {}
        ticket.config, ticket.refused = dict(params), handoff.refused
        if not ticket.refused:
            try:
                ticket.config = resolve(params)  # groups flattened there
            except UserError as exc:  # W&B handed out a config the trainer refuses
                ticket.refused = str(exc)
        try:
            if ticket.refused:
                run = self.runs.start(ticket, {}, tags=("invalid",))
            else:
                family = model_family(ticket.config)
                run = self.runs.start(ticket, relevant(ticket.config), family, group=family)
        except Exception as exc:  # W&B could not start the run: the agent records it failed
            ticket.refused = f"W&B could not start the run: {type(exc).__name__}: {exc}"
            return
        ticket.label = f"run {run.run.id}"

    def _release_current(self) -> None:
        if self._current is not None:
            self._current.released.set()
            self._current = None

    # -- results -----------------------------------------------------------------------------
    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        stop = self.runs.report(ticket, epoch, metrics)
        return stop or ticket.handle.stop.is_set()

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        # A preempting run that exits non-zero is requeued by W&B for another agent.
        self.runs.close(ticket, status, summary, reason, preempting=status == "interrupted")

    def attach(self, ticket: Ticket, folder: Path) -> None:
        self.runs.attach(ticket, folder)

    def close(self) -> None:
        """End W&B's agent loop, as W&B ends it on Ctrl-C, and let its waiting run return.

        wandb.agent returns no handle to stop it by: its loop (`pyagent.Agent.
        _run_jobs_from_queue`) ends by itself on `count` or a server command, and on Ctrl-C
        through its `except KeyboardInterrupt` (stop the runs, exit, tear down). The loop runs
        in our thread, which gets no signals, so KeyboardInterrupt is raised there the way
        W&B's own `_terminate_thread` raises its stop into run threads. It lands when the loop
        next runs Python: here, as the run it waits on returns (so it never asks for another),
        or after at most the 5 s its idle loop sleeps. `--count` is counted by our agent alone
        (one policy), so this is how every reason for the agent to stop ends W&B's loop.
        """
        if self._closed.is_set():
            return
        thread = self._thread
        if thread is not None and thread.is_alive() and not self._ended.is_set():
            _raise_in(thread, KeyboardInterrupt)
        self._closed.set()  # after the interrupt: the held run's thread may return now
        self._release_current()
        if thread is not None:
            thread.join(CLOSE_WAIT_SECONDS)

    # -- W&B's side (its threads) --------------------------------------------------------------
    def _agent_loop(self) -> None:
        error = None
        try:
            run_agent(self.path, self._hand_out)
        except UserError as exc:
            error = exc
        except BaseException:  # KeyboardInterrupt from close() that W&B's loop did not catch
            pass
        self._ended.set()
        self._handoffs.put(_AgentEnded(error))

    def _hand_out(self) -> None:
        """W&B's function for each run, in the run's own thread: hand the run over, wait."""
        handoff = _Handoff()
        while True:
            try:
                if not handoff.queued and not self._closed.is_set():
                    self._queue(handoff)
                while not (handoff.released.is_set() or self._closed.is_set()):
                    handoff.released.wait(POLL_SECONDS)
                return
            except Exception as exc:
                if not _is_stop_request(exc):
                    raise
                handoff.stop.set()  # the trial ends at its next epoch; keep waiting for it

    def _queue(self, handoff: _Handoff) -> None:
        # W&B's stop can land anywhere in here; a second put is skipped by next_trial.
        if handoff.params is None:
            try:
                handoff.params = sweep_params() or {}
            except UserError as exc:
                handoff.params, handoff.refused = {}, str(exc)
        self._handoffs.put(handoff)
        handoff.queued = True

    # -- what the agent reads of the sweep: its metric, from W&B's server -------------------
    @property
    def goal(self) -> str:
        return self._metric().get("goal", "minimize")  # W&B's default

    def score(self, summary: Mapping[str, Any], history: list[dict[str, float]]) -> float | None:
        name = self._metric().get("name")
        return None if name is None else objective.trial_value(history, summary, name, self.goal)

    def _metric(self) -> dict[str, Any]:
        """The sweep config's `metric`, read once from W&B's public API."""
        if self._config is None:
            import wandb

            self._config = dict(wandb.Api().sweep(self.sweep_id).config)
        return dict(self._config.get("metric") or {})


def _is_stop_request(exc: Exception) -> bool:
    """W&B's agent stops a function run by raising a bare `Exception()` in its thread."""
    return type(exc) is Exception and not exc.args


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Raise `exc_type` in `thread` at its next Python instruction."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )
