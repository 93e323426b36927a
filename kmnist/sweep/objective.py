"""How W&B's engine scores runs for Bayesian search: the metric's extremum, or an imputed value.

After `sweeps.bayes_search._construct_gp_data` (W&B's engine, 0.3.0): a finished run counts with
the best value of the metric over its history and summary for the goal (its "extremum"); a
failed run with a value imputed by `metric.impute` (worst: the worst value any finished or
failed run reached; best or latest: the run's own, else 0); a running run only with
`metric.impute_while_running`; a pending one not at all. Pure: plain values in, plain values out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real

FINISHED, FAILED, RUNNING, PENDING = "finished", "failed", "running", "pending"
WANDB_STARTUP = 2  # W&B's Bayesian search draws at random until two runs have a value
NO_VALUE = 0.0  # what W&B imputes when nothing can be read


@dataclass(frozen=True)
class Run:
    """One run as W&B's Bayesian search sees it: its state and its metric's values."""

    state: str  # finished, failed, running or pending
    history: Sequence[object] = field(default_factory=tuple)  # one value per logged step
    summary: object | None = None  # the summary's value, when the summary has the metric


def finite(values: Iterable[object]) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
    ]


def extremum(values: Iterable[object], goal: str) -> float | None:
    """The best finite value for the goal, or None when there is none."""
    found = finite(values)
    if not found:
        return None
    return max(found) if goal == "maximize" else min(found)


def run_extremum(run: Run, goal: str) -> float | None:
    """W&B's `metric_extremum`: over the history and the summary value."""
    summary = [] if run.summary is None else [run.summary]
    return extremum([*run.history, *summary], goal)


def trial_value(
    history: Iterable[Mapping[str, object]], summary: Mapping[str, object], name: str, goal: str
) -> float | None:
    """A trial's score, the one rule: the metric's extremum over its epochs and its summary
    (W&B's `metric_extremum`); NaN and infinities never count. The engine tells it, the
    leaderboard ranks by it, the agent keeps the best trials' files by it."""
    history_values = [epoch[name] for epoch in history if name in epoch]
    return run_extremum(Run(FINISHED, history_values, summary.get(name)), goal)


def summary_value(summary: Mapping[str, object], name: str) -> float | None:
    """The summary's value of the metric, when it is a finite number: what W&B's schedulers
    tell a study (`Optimizer.objective_values` reads `summary_metrics`)."""
    found = finite([summary.get(name)])
    return found[0] if found else None


def worst(runs: Sequence[Run], goal: str) -> float:
    """The worst value any finished or failed run reached (W&B's `impute: worst`)."""
    other = "minimize" if goal == "maximize" else "maximize"
    reached = [run_extremum(r, other) for r in runs if r.state in (FINISHED, FAILED)]
    found = [v for v in reached if v is not None]
    if not found:
        return NO_VALUE
    return min(found) if goal == "maximize" else max(found)


def imputed(run: Run, strategy: str, goal: str, worst_value: float) -> float:
    if strategy == "worst":
        return worst_value
    if strategy == "best":
        best = run_extremum(run, goal)
        return NO_VALUE if best is None else best
    latest = finite(run.history)  # "latest" reads the history only, as W&B's does
    return latest[-1] if latest else NO_VALUE


def training_set(
    runs: Sequence[Run], goal: str, impute: str = "worst", impute_while_running: str = "false"
) -> list[tuple[int, float]]:
    """(index in `runs`, value) of each run W&B's Bayesian search learns from, in run order."""
    worst_value = worst(runs, goal)
    scored = []
    for index, run in enumerate(runs):
        strategy = impute if run.state != RUNNING else impute_while_running
        if run.state == PENDING or strategy == "false":
            continue
        best = run_extremum(run, goal) if run.state != FAILED else None
        value = best if best is not None else imputed(run, strategy, goal, worst_value)
        scored.append((index, value))
    return scored
