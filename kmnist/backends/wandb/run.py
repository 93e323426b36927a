"""One trial as one W&B run: config at init, one `log` per epoch, the result as its summary.

`WandbRun` is one run; `TrialRuns` keeps one per trial for the two sweeps that log to W&B (a
W&B sweep's own runs, and the offline runs mirroring an Optuna sweep's trials).

One `log` call per epoch matters: W&B's hyperband counts logged values, not steps. Works online
or with `WANDB_MODE=offline` (the run is written under ./wandb and can be synced later).

Before `wandb.init` the run's folder must have room (`run_files.require_room`: one line, exit 2);
an offline run's `.wandb` file is checked once it is finished (`run_files.check_written`: a run
cut short by a disk that filled meanwhile is a StorageFault, exit 1, not a silent success).

A run can be asked to stop: by W&B (a stop set on the server reaches the run's `stop_fn`), or
by a signal once `stop_on_signals` is on (W&B's command-line agent stops a hyperband loser with
SIGTERM). Either way the trial ends at its next epoch and the run is recorded as stopped.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmnist.backends.wandb import run_files

if TYPE_CHECKING:
    from kmnist.backends import Ticket
    from kmnist.contract import TrialResult

# The run's status in its summary, and the tag it gets; completed runs get no tag.
STATUS_TAGS = {s: s for s in ("stopped", "pruned", "failed", "interrupted")}


class WandbRun:
    def __init__(
        self,
        config: Mapping[str, Any],
        project: str | None = "kmnist-sweep",
        group: str | None = None,
        tags: tuple[str, ...] = (),
        *,
        job_type: str | None = None,
        name: str | None = None,
        run_dir: Path | None = None,
        mode: str | None = None,
        stop_signals: bool = False,
    ) -> None:
        import wandb  # imported here: importing wandb costs about a second

        self.stop_requested = threading.Event()
        if stop_signals:  # before init: a stop that comes while the run starts is kept too
            self.stop_on_signals()
        self.epochs = 0
        self.last: dict[str, float] = {}
        run_files.require_room(run_dir if run_dir is not None else run_files.default_dir())
        # A debug-log line W&B cannot write (the disk filled meanwhile) must not print a
        # traceback each (thousands); the run's file is checked once it is finished instead.
        logging.raiseExceptions = False
        self.run = wandb.init(
            project=project,
            config=dict(config),
            group=group,
            job_type=job_type or str(config.get("model", "train")),
            tags=list(tags),
            name=name,
            dir=str(run_dir) if run_dir is not None else None,
            mode=mode,
            settings=_stop_settings(wandb, self.stop_requested),
        )
        self.folder = Path(self.run.dir).parent  # the run's own folder; `dir` is its files/

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        self.run.log(dict(metrics))
        self.epochs += 1
        self.last = dict(metrics)
        return self.stop_requested.is_set()

    def finish(self, result: TrialResult, status: str | None = None) -> None:
        self.close(status or result.status, result.summary, result.reason)

    def close(
        self,
        status: str,
        summary: Mapping[str, Any],
        reason: str = "",
        *,
        preempting: bool = False,
        exit_code: int | None = None,
    ) -> None:
        """Final summary and state. A failed run exits 1; a preempting one is requeued by W&B
        (a sweep requeues a run marked preempting that exits non-zero)."""
        self.run.summary.update({**(summary or self.last), "status": status})
        if reason:
            self.run.summary["failure_reason"] = reason
        if tag := STATUS_TAGS.get(status):
            self.run.tags = (*self.run.tags, tag)
        if preempting:
            self.run.mark_preempting()
        if exit_code is None:
            exit_code = 1 if status in ("failed", "interrupted") or preempting else 0
        # closing W&B's debug log fails on a full disk: the run's file says what was kept
        with contextlib.suppress(OSError):
            self.run.finish(exit_code=exit_code)
        if self.run.offline:  # online, W&B's server holds the run; the local file is a cache
            run_files.check_written(self.folder / f"run-{self.run.id}.wandb")

    def log_files(self, folder: Path) -> None:
        """The trial's files as a `model` artifact of this run, named after it: offline runs
        keep it in their folder, and `wandb sync` uploads it with the run."""
        import wandb

        artifact = wandb.Artifact(f"trial-{self.run.id}", type="model")
        artifact.add_dir(str(folder))  # copied into W&B's staging area here, at add time
        self.run.log_artifact(artifact)

    def stop_on_signals(self) -> dict[int, Any]:
        """SIGTERM/SIGHUP/SIGINT end the trial at its next epoch; a second SIGINT: at once.
        Returns the previous handlers (main thread only)."""

        def handle(signum: int, frame: Any) -> None:
            if self.stop_requested.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested.set()

        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # SIGHUP: a closed terminal
        return {sig: signal.signal(sig, handle) for sig in signals}


class TrialRuns:
    """One W&B run per trial: opened when it is handed out, one log per epoch, closed with its
    status. Job type and first tag name the model family, as W&B's tables group runs by."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # WandbRun's keywords for every run: project, mode, run_dir...
        self.open: dict[int, WandbRun] = {}

    def start(
        self,
        ticket: Ticket,
        config: Mapping[str, Any],
        family: str = "",
        tags: tuple[str, ...] = (),
        **settings: Any,
    ) -> WandbRun:
        run = WandbRun(
            config,
            tags=(family, *tags) if family else tags,
            job_type=family or None,
            **{**self.settings, **settings},
        )
        self.open[ticket.number] = run
        return run

    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Log the epoch; True once W&B asked the run to stop."""
        run = self.open.get(ticket.number)
        return run.report(epoch, metrics) if run is not None else False

    def attach(self, ticket: Ticket, folder: Path) -> None:
        if (run := self.open.get(ticket.number)) is not None:
            run.log_files(folder)

    def close(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        reason: str = "",
        **how: Any,
    ) -> None:
        run = self.open.pop(ticket.number, None)
        if run is not None:
            run.close(status, summary, reason, **how)


def _stop_settings(wandb: Any, stop: threading.Event) -> Any:
    """A W&B stop (set on the server) sets `stop` instead of W&B's SIGINT mid-batch.
    Older wandb has no `stop_fn` setting: it keeps its default there."""
    try:
        return wandb.Settings(stop_fn=stop.set)
    except (TypeError, ValueError):
        return None
