"""Optuna samplers that search as W&B's engine does: its laws, its grid order, its Bayes data.

All three are `BaseSampler`s built on Optuna's public API only.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import RetryFailedTrialCallback
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from kmnist.backends.optuna.axes import axes, encode
from kmnist.sweep import grid, objective
from kmnist.sweep.distributions import ppf
from kmnist.sweep.spec import SweepSpec


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks some public API experimental: a warning no user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one runs again (Optuna's retry record), or None for a new trial."""
    with quiet_experimental():
        return RetryFailedTrialCallback.retried_trial_number(trial)


def retried(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials that some later trial runs again."""
    # retry_history, not failed_trial: in a chain 0 -> 5 -> 9, failed_trial names 0 only.
    with quiet_experimental():
        return {n for t in trials for n in RetryFailedTrialCallback.retry_history(t)}


class WandbRandomSampler(BaseSampler):
    """Random search drawing every parameter from its W&B law."""

    def __init__(self, spec: SweepSpec, seed: int | None = None, method: str = "random") -> None:
        self._axes = {axis.name: axis for axis in axes(spec, method)}
        self._rng = np.random.default_rng(seed)
        self._fallback = RandomSampler(seed=seed)  # for names the spec does not know

    def reseed_rng(self) -> None:  # optuna calls this in forked workers
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        axis = self._axes.get(param_name)
        if axis is None or axis.distribution != param_distribution:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        u = float(self._rng.random())
        if axis.unit:
            return u
        return encode(axis, ppf(axis.param, u))


class WandbGridSampler(BaseSampler):
    """Grid search in W&B's order: the i-th new trial of the study takes grid point i.

    A trial's place is the number of new trials numbered before it (a retry takes the place of
    the trial it runs again), so agents that ask at once get different points, and a run_cap
    below the grid size covers the points W&B's engine would. Points are computed, never listed.
    """

    def __init__(self, spec: SweepSpec) -> None:
        self._parameters = spec.parameters
        self._axes = axes(spec, "grid")
        self.size = grid.size(spec.parameters)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {axis.name: axis.distribution for axis in self._axes}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        # Past the end (a lost race for the last point) any point will do: it is discarded.
        index = min(self.place(study, trial), self.size - 1)
        chosen = grid.digits(self._parameters, index)
        return {axis.name: axis.distribution.choices[chosen[axis.path]] for axis in self._axes}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        raise ValueError(f"{param_name} is not a parameter of this grid")

    def place(self, study: Study, trial: FrozenTrial) -> int:
        """The grid point (from 0) of `trial`: its first run's count of new trials before it."""
        first = retry_of(trial)
        first = trial.number if first is None else first
        trials = study.get_trials(deepcopy=False)
        return sum(t.number < first and retry_of(t) is None for t in trials)

    def is_exhausted(self, study: Study) -> bool:
        new = sum(retry_of(t) is None for t in study.get_trials(deepcopy=False))
        return new >= self.size

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        # In study.optimize, end at the last point; ask-and-tell agents check is_exhausted, and
        # there study.stop() raises.
        if self.is_exhausted(study):
            with contextlib.suppress(RuntimeError):
                study.stop()


class WandbBayesSampler(BaseSampler):
    """Bayesian search shown the runs as W&B's engine scores them.

    Optuna's GP and TPE samplers learn from complete trials only, from their told value. W&B's
    engine learns from every finished run (a hyperband-stopped one too) by the metric's best
    value over its history, and from failed runs with an imputed value (`metric.impute`). So
    each suggestion is made on a view: an in-memory study (public API: `create_study`,
    `add_trials`) holding W&B's training set as complete trials, and the running trials as
    running (the GP treats them as W&B treats runs in flight); the real study is unchanged.
    """

    def __init__(self, spec: SweepSpec, inner: BaseSampler, seed: int | None = None) -> None:
        assert spec.metric is not None, "validate refuses bayes without a metric"
        self._metric = spec.metric
        self.inner = inner
        self._space = {axis.name: axis.distribution for axis in axes(spec, "bayes")}
        self._random = WandbRandomSampler(spec, seed, "bayes")  # startup draws: W&B's laws

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        view = self.view(study, search_space)
        view.ask()  # stands for `trial` there: the inner sampler records what it suggests on it
        asking = view.get_trials(deepcopy=False)[-1]
        with quiet_experimental():
            return self.inner.sample_relative(view, asking, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def view(self, study: Study, search_space: dict[str, BaseDistribution]) -> Study:
        """An in-memory study holding what W&B's Bayesian search learns from."""
        trials = [
            t for t in study.get_trials(deepcopy=False) if search_space.keys() <= t.params.keys()
        ]
        runs = wandb_runs(trials, self._metric.name, retried(study.get_trials(deepcopy=False)))
        scored = objective.training_set(
            runs, _goal(study), self._metric.impute, self._metric.impute_while_running
        )
        with _quiet_logs():  # Optuna logs each study it creates
            view = optuna.create_study(direction=study.direction, sampler=RandomSampler())
        learned = {index for index, _ in scored}
        view.add_trials(
            [_as_trial(trials[i], search_space, TrialState.COMPLETE, y) for i, y in scored]
            + [
                _as_trial(t, search_space, TrialState.RUNNING)
                for i, t in enumerate(trials)
                if t.state == TrialState.RUNNING and i not in learned
            ]
        )
        return view


def wandb_runs(trials: Sequence[FrozenTrial], metric: str, rerun: set[int]) -> list[objective.Run]:
    """Each trial as the W&B run it stands for.

    Completed and hyperband-stopped trials are finished runs (the agent ends a stopped run with
    exit 0, as W&B's agent does); a failed trial is a failed run, unless it runs again (an
    interrupted or orphaned trial: W&B's preempted, pending until its retry reports).
    """
    runs = []
    for t in trials:
        history = [t.intermediate_values[step] for step in sorted(t.intermediate_values)]
        summary = t.user_attrs.get("summary", {}).get(metric)
        runs.append(objective.Run(_run_state(t, rerun), history, summary))
    return runs


def _run_state(trial: FrozenTrial, rerun: set[int]) -> str:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return objective.FINISHED
    if trial.state == TrialState.FAIL:
        gone = trial.number in rerun or "discarded" in trial.user_attrs
        return objective.PENDING if gone else objective.FAILED
    return objective.RUNNING if trial.state == TrialState.RUNNING else objective.PENDING


def _as_trial(
    trial: FrozenTrial,
    space: dict[str, BaseDistribution],
    state: TrialState,
    value: float | None = None,
) -> FrozenTrial:
    return create_trial(
        state=state,
        value=value,
        params={name: trial.params[name] for name in space},
        distributions=dict(space),
    )


def _goal(study: Study) -> str:
    return "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize"
