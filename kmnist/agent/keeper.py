"""Keeping what a trial produced: an offline sweep's go to its artifact folder, best N kept; a
W&B sweep's are logged as an artifact of the trial's run.

Runs in the agent, before the trial's result is sent to the sweep, so a trial whose artifacts
cannot be written (disk full, read-only folder) is still recorded, with a note in its summary
saying why its artifacts are missing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from kmnist.backends import Ticket, WorkerSweep
from kmnist.contract import TrialResult
from kmnist.trainer import artifacts

KEPT_STATUSES = ("completed", "stopped")  # a stopped (pruned) trial is a model too
Keeper = Callable[[Ticket, TrialResult], None]  # the agent loop's `keep` hook


def keeper_for(sweep: WorkerSweep, root: Path, keep: int) -> Keeper | None:
    """Where a sweep's trial files go: with the engine (a W&B run's artifact), else the best
    `keep` in `root`; none with keep 0."""
    if not keep:
        return None
    return RunArtifacts(sweep) if sweep.holds_artifacts else ArtifactKeeper(root, keep, sweep)


class ArtifactKeeper:
    """An offline sweep's keeper: each trial's files in the sweep's artifact folder, the best
    `keep` kept, ranked by the sweep's own `score` (the rule the leaderboard ranks by)."""

    def __init__(self, root: Path, keep: int, sweep: WorkerSweep) -> None:
        self.root, self.keep, self.sweep = root, keep, sweep

    def __call__(self, ticket: Ticket, result: TrialResult) -> None:
        if self.keep <= 0 or result.outputs is None or result.status not in KEPT_STATUSES:
            return
        value = self.sweep.score(result.summary, result.history)
        try:
            artifacts.save(
                self.root, ticket.number, ticket.config, value, result.summary, result.outputs
            )
            artifacts.prune(self.root, self.keep, self.sweep.goal)
        except OSError as exc:
            # Said in the trial's record, not on stderr: a full disk has its own one line there.
            result.summary["artifacts"] = f"not stored in {self.root}: {exc.strerror or exc}"


class RunArtifacts:
    """A W&B sweep's keeper: each kept trial's files, written to a scratch folder, become an
    artifact of its run (W&B holds them; nothing stays on the agent's disk)."""

    def __init__(self, sweep: WorkerSweep) -> None:
        self.sweep = sweep

    def __call__(self, ticket: Ticket, result: TrialResult) -> None:
        if result.outputs is None or result.status not in KEPT_STATUSES:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="kmnist-trial-") as scratch:
                folder = artifacts.save(
                    Path(scratch), ticket.number, ticket.config, None, result.summary,
                    result.outputs,
                )  # fmt: skip
                self.sweep.attach(ticket, folder)
        except Exception as exc:  # W&B's or the disk's: the run is still recorded, with why
            result.summary["artifacts"] = f"not logged to W&B: {type(exc).__name__}: {exc}"
