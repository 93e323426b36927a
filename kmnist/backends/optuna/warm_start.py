"""Warm start: a new sweep's study told the finished trials of an earlier sweep, as W&B's
scheduler tells a study the runs its sweep already has (`tell_existing_finished_run`): each
completed trial with the value this sweep would have told it, each failed one as failed, over
this sweep's parameters; a trial outside them (a parameter missing, or a value outside its
range) is skipped and counted. Seeded trials teach the sampler only: they use up no run_cap and
are no rows of the leaderboard (they are the earlier sweep's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from kmnist.backends.optuna.axes import axes, encode
from kmnist.backends.optuna.samplers import WandbGridSampler, retried
from kmnist.backends.optuna.stored import StoredSweep
from kmnist.errors import UserError

SEEDED = "seeded_from"  # the user attribute naming the earlier sweep's trial


@dataclass(frozen=True)
class Seeded:
    told: int
    skipped: int


def seed(sweep: Any, earlier: StoredSweep) -> Seeded:
    """Tell `sweep` (a fresh OptunaSweep) the finished trials of `earlier`."""
    if isinstance(sweep.plan.sampler, WandbGridSampler):
        raise UserError(
            "--warm-start: a grid visits every point whatever ran before: nothing to seed"
        )
    space = search_space(sweep)
    trials = earlier.study.get_trials(deepcopy=False)
    rerun = retried(trials)
    told = skipped = 0
    for trial in trials:
        if not _a_runs_end(trial, rerun):
            continue
        seeded = _seeded(sweep, space, trial, earlier.sweep_id)
        if seeded is None:
            skipped += 1
            continue
        sweep.study.add_trial(seeded)
        told += 1
    return Seeded(told, skipped)


def _a_runs_end(trial: FrozenTrial, rerun: set[int]) -> bool:
    """Completed, pruned or failed for good: not queued again, not a lost race, not seeded."""
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        return False
    gone = trial.number in rerun or "discarded" in trial.user_attrs
    return not (gone or SEEDED in trial.user_attrs)


def search_space(sweep: Any) -> dict[str, BaseDistribution]:
    if sweep.plan.distributions is not None:
        return dict(sweep.plan.distributions)
    return {axis.name: axis.distribution for axis in axes(sweep.spec)}


def _seeded(
    sweep: Any, space: dict[str, BaseDistribution], trial: FrozenTrial, earlier_id: str
) -> FrozenTrial | None:
    config = trial.user_attrs.get("config", {})
    params = _params(sweep, config)
    if params is None or set(params) != set(space):
        return None
    summary = trial.user_attrs.get("summary", {})
    history = trial.user_attrs.get("history", [])
    values, state = None, TrialState.FAIL  # W&B tells a stopped or failed run as failed
    if trial.state == TrialState.COMPLETE:
        told = sweep.told(summary, sweep.score(summary, history))
        if told is None:
            return None  # finished without every objective: W&B skips it too
        values, state = (told if isinstance(told, list) else [told]), TrialState.COMPLETE
    attrs = {"config": config, "summary": summary, SEEDED: f"{earlier_id}#{trial.number}"}
    try:
        return create_trial(
            params=params, distributions=space, values=values, state=state, user_attrs=attrs
        )
    except ValueError:  # a value outside this sweep's range
        return None


def _params(sweep: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trial's parameters as this sweep's study stores them, or None if it cannot."""
    if sweep.plan.distributions is not None:
        names = sweep.plan.distributions
        return {name: config[name] for name in names if name in config}
    found = {}
    for axis in axes(sweep.spec):
        value = _at(config, axis.path)
        if value is _MISSING or axis.unit:  # a quantile-searched law: no inverse kept here
            return None
        if axis.indexed:
            choices = axis.distribution
            assert isinstance(choices, CategoricalDistribution)
            matches = [i for i in choices.choices if axis.decode(i) == value]
            if not matches:
                return None
            found[axis.name] = matches[0]
        else:
            found[axis.name] = encode(axis, value)
    return found


_MISSING = object()


def _at(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    here: Any = config
    for key in path:
        if not isinstance(here, Mapping) or key not in here:
            return _MISSING
        here = here[key]
    return here
