"""A sweep spec as Optuna pieces: sampler, direction, pruner, trial cap, target, trial config.

- grid → `GridSampler` over the exact product (`grid.values` of each parameter);
- random → `WandbRandomSampler`, which draws from W&B's own laws (probabilities, normal and beta
  priors included), not from Optuna's look-alikes;
- bayes → `GPSampler` (default) or `TPESampler`. Laws Optuna cannot express (quantized, normal,
  beta) are searched on the unit interval and mapped through the law's quantile function, as
  W&B's own Bayesian search does;
- early_terminate: hyperband → `WandbHyperbandPruner`, W&B's rule over the study's trials.
Parameter names are the group path joined by "/" (W&B names cannot hold "/").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import BasePruner, NopPruner
from optuna.samplers import BaseSampler, GPSampler, GridSampler, RandomSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from kmnist.errors import UserError
from kmnist.sweep import grid, hyperband
from kmnist.sweep.distributions import ppf
from kmnist.sweep.spec import Bounded, Categorical, Constant, Param, SweepSpec

SEP = "/"
_PRIMITIVE = (type(None), bool, int, float, str)
_LOG_FORMS = ("log_uniform_values", "inv_log_uniform_values")


@dataclass(frozen=True)
class Axis:
    """One searched parameter as Optuna sees it, and how to turn Optuna's value into W&B's."""

    name: str
    path: tuple[str, ...]
    param: Param
    distribution: BaseDistribution
    decode: Callable[[Any], Any]
    unit: bool = False  # searched as a quantile u in [0, 1], value = ppf(u)
    indexed: bool = False  # a categorical chosen by index: its values are not plain scalars


def axes(spec: SweepSpec, method: str | None = None) -> list[Axis]:
    method = method or spec.method
    found = []
    for path, param in spec.leaves():
        if isinstance(param, Constant):
            continue
        name = SEP.join(path)
        if method == "grid":
            found.append(_choice_axis(name, path, param, grid.values(param)))
        else:
            found.append(_axis(name, path, param))
    return found


def _choice_axis(name: str, path: tuple[str, ...], param: Param, values: Sequence[Any]) -> Axis:
    # Optuna stores only plain scalars, once each: anything else is chosen by index.
    plain = all(type(v) in _PRIMITIVE for v in values) and len(set(map(repr, values))) == len(
        values
    )
    if plain:
        return Axis(name, path, param, CategoricalDistribution(list(values)), lambda v: v)
    listed = list(values)
    indices = CategoricalDistribution(list(range(len(listed))))
    return Axis(name, path, param, indices, listed.__getitem__, indexed=True)


def _axis(name: str, path: tuple[str, ...], param: Param) -> Axis:
    if isinstance(param, Categorical):
        return _choice_axis(name, path, param, param.values)
    if isinstance(param, Bounded) and param.distribution == "int_uniform":
        return Axis(name, path, param, IntDistribution(int(param.min), int(param.max)), int)
    if isinstance(param, Bounded) and param.distribution in ("uniform", *_LOG_FORMS):
        log = param.distribution in _LOG_FORMS
        return Axis(name, path, param, FloatDistribution(param.min, param.max, log=log), float)
    return Axis(name, path, param, FloatDistribution(0.0, 1.0), lambda u: ppf(param, u), True)


def suggest_config(trial: Trial, spec: SweepSpec, method: str | None = None) -> dict[str, Any]:
    """The trial's config, W&B-shaped: constants included, groups nested."""
    flat: dict[tuple[str, ...], Any] = {
        path: param.value for path, param in spec.leaves() if isinstance(param, Constant)
    }
    for axis in axes(spec, method):
        flat[axis.path] = axis.decode(_suggest(trial, axis))
    ordered = {path: flat[path] for path, _ in spec.leaves()}
    return grid.nest(ordered)


def _suggest(trial: Trial, axis: Axis) -> Any:
    dist = axis.distribution
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(axis.name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(axis.name, dist.low, dist.high)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(axis.name, dist.low, dist.high, log=dist.log)


class WandbRandomSampler(BaseSampler):
    """Random search drawing every parameter from its W&B law."""

    def __init__(self, spec: SweepSpec, seed: int | None = None) -> None:
        self._axes = {axis.name: axis for axis in axes(spec, "random")}
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
        return _encode(axis, ppf(axis.param, u))


def _encode(axis: Axis, value: Any) -> Any:
    dist = axis.distribution
    if isinstance(dist, CategoricalDistribution):
        if not axis.indexed:
            return value
        return next(i for i in dist.choices if axis.decode(i) is value)
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return min(max(value, dist.low), dist.high)  # float rounding at the ends of the range


class WandbHyperbandPruner(BasePruner):
    """W&B's hyperband rule: a trial's reports are its history, one per epoch."""

    def __init__(self, bands: Sequence[int], eta: float = 3, strict: bool = True) -> None:
        self.bands, self.eta, self.strict = list(bands), eta, strict

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        histories = {
            t.number: history(t)
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING
        }
        histories[trial.number] = history(trial)
        goal = "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize"
        stop = hyperband.to_stop(histories, [trial.number], self.bands, self.eta, goal, self.strict)
        return bool(stop)


def history(trial: FrozenTrial) -> list[float]:
    return [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]


@dataclass(frozen=True)
class StudyPlan:
    """What an Optuna study needs to run a sweep as W&B would."""

    direction: str
    sampler: BaseSampler
    pruner: BasePruner
    run_cap: int | None
    target: float | None

    def target_reached(self, value: float) -> bool:
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target


class AskTellGridSampler(GridSampler):
    """GridSampler for agents that ask and tell: they check `is_exhausted` before asking.

    GridSampler's end-of-grid signal, `study.stop()` in `after_trial`, raises outside
    `study.optimize`; there it is not needed, so that one error is dropped.
    """

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        with contextlib.suppress(RuntimeError):
            super().after_trial(study, trial, state, values)


def make_sampler(spec: SweepSpec, seed: int | None = None, bayes: str = "gp") -> BaseSampler:
    if spec.method == "grid":
        space = {axis.name: _choices(axis) for axis in axes(spec, "grid")}
        return AskTellGridSampler(space or {"_": [0]}, seed=seed)
    if spec.method == "random":
        return WandbRandomSampler(spec, seed)
    if spec.method == "bayes":
        if bayes not in ("gp", "tpe"):
            raise UserError(f"unknown Bayesian sampler {bayes!r}: expected gp or tpe")
        return GPSampler(seed=seed) if bayes == "gp" else TPESampler(seed=seed)
    raise UserError(
        f"method {spec.method} runs on a W&B scheduler only; the Optuna engine runs "
        "grid, random and bayes"
    )


def _choices(axis: Axis) -> list[Any]:
    assert isinstance(axis.distribution, CategoricalDistribution)
    return list(axis.distribution.choices)


def make_pruner(spec: SweepSpec) -> BasePruner:
    early = spec.early_terminate
    if early is None:
        return NopPruner()
    return WandbHyperbandPruner(early.brackets(), early.eta, early.strict)


def plan(spec: SweepSpec, seed: int | None = None, bayes: str = "gp") -> StudyPlan:
    target = spec.metric.target if spec.metric else None
    return StudyPlan(
        spec.goal, make_sampler(spec, seed, bayes), make_pruner(spec), spec.run_cap, target
    )
