"""Search engines behind one small interface: a sweep hands out trials and takes results back.

Backends see configs and metrics as plain data; they never import a model or the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kmnist.errors import UserError


class SweepDone(Exception):
    """No more trials: the sweep is finished (run_cap, grid exhausted, target met, stopped)."""


class SweepPaused(Exception):
    """No trial for now: the sweep is paused; ask again later."""


class UnknownSweep(UserError):
    """The sweep id names no sweep in this storage."""


@dataclass
class Ticket:
    """A trial handed to an agent: its number, its W&B-shaped config, the engine's handle."""

    number: int
    config: dict[str, Any]
    handle: Any = None
    retry_of: int | None = None


@dataclass
class TrialRecord:
    """One trial as the leaderboard shows it."""

    number: int
    state: str  # running, completed, pruned, failed, waiting
    config: dict[str, Any]
    value: float | None  # the sweep metric
    summary: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    duration: float | None = None
    reason: str = ""
    retry_of: int | None = None


class Sweep(Protocol):
    sweep_id: str

    def next_trial(self) -> Ticket:
        """A trial to run; raises SweepDone or SweepPaused."""
        ...

    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record one epoch; True asks the trial to stop (early termination)."""
        ...

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        """status: completed, stopped (pruned), failed, or interrupted (run again elsewhere)."""
        ...

    def trials(self) -> list[TrialRecord]: ...

    def set_state(self, state: str) -> None:
        """running, paused or stopped."""
        ...
