"""A sweep's progress: trials by state, the best so far, and when it should be done."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kmnist.backends import SweepInfo, TrialRecord
from kmnist.results.leaderboard import rank

COUNTED = ("completed", "pruned", "running", "failed")


@dataclass
class Progress:
    counts: dict[str, int]  # trials in each of COUNTED
    best: TrialRecord | None
    eta_minutes: float | None  # None: no run_cap, nothing done yet, or no agent alive

    @property
    def done(self) -> int:
        return self.counts["completed"] + self.counts["pruned"]


def progress(records: Sequence[TrialRecord], info: SweepInfo) -> Progress:
    counts = {state: sum(r.state == state for r in records) for state in COUNTED}
    # Completed trials only, as `best` takes them: a pruned or failed trial's value is partial.
    best = next((r for r in rank(records, info.goal) if r.state == "completed"), None)
    return Progress(counts, best, eta_minutes(records, info))


def eta_minutes(records: Sequence[TrialRecord], info: SweepInfo) -> float | None:
    """Minutes until run_cap trials are done: the trials left, shared by the agents alive, at
    the mean duration so far, plus half a trial for the ones running now."""
    running = [r for r in records if r.state == "running"]
    done = [r for r in records if r.state in ("completed", "pruned") and r.duration]
    if not (info.run_cap and done and info.agents_alive):
        return None
    left = max(0, info.run_cap - len(done) - len(running))
    mean = sum(r.duration or 0.0 for r in done) / len(done)
    return mean * (left / info.agents_alive + 0.5) / 60
