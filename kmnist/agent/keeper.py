"""Keeping what a trial produced: its outputs go to the sweep's artifact folder, best N kept.

Runs in the agent, before the trial's result is sent to the sweep, so a trial whose artifacts
cannot be written (disk full, read-only folder) is still recorded, with a note in its summary
saying why its artifacts are missing.
"""

from __future__ import annotations

from pathlib import Path

from kmnist.backends import Ticket
from kmnist.contract import TrialResult
from kmnist.trainer import artifacts

KEPT_STATUSES = ("completed", "stopped")  # a stopped (pruned) trial is a model too


class ArtifactKeeper:
    def __init__(self, root: Path, keep: int, metric: str, goal: str) -> None:
        self.root, self.keep, self.metric, self.goal = root, keep, metric, goal

    def __call__(self, ticket: Ticket, result: TrialResult) -> None:
        if self.keep <= 0 or result.outputs is None or result.status not in KEPT_STATUSES:
            return
        try:
            artifacts.save(
                self.root, ticket.number, ticket.config, self.value(result), result.summary,
                result.outputs,
            )  # fmt: skip
            artifacts.prune(self.root, self.keep, self.goal)
        except OSError as exc:
            # Said in the trial's record, not on stderr: a full disk has its own one line there.
            result.summary["artifacts"] = f"not stored in {self.root}: {exc.strerror or exc}"

    def value(self, result: TrialResult) -> float | None:
        """The sweep metric's best value over the trial's epochs (W&B's extremum), the value
        trials are ranked by."""
        seen = [h[self.metric] for h in result.history if isinstance(h.get(self.metric), float)]
        if not seen:
            value = result.summary.get(self.metric)
            return value if isinstance(value, float) else None
        return max(seen) if self.goal == "maximize" else min(seen)
