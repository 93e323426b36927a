"""Each searched parameter of a sweep as an Optuna distribution, and a trial's W&B-shaped config.

Parameter names are the group path joined by "/" (W&B names cannot hold "/"). Laws Optuna
cannot express (quantized, normal, beta; in Bayesian search also a categorical with
probabilities) are searched on the unit interval and mapped through the law's quantile
function, as W&B's own Bayesian search does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from kmnist.sweep import grid
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
            found.append(_axis(name, path, param, method))
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


def _axis(name: str, path: tuple[str, ...], param: Param, method: str) -> Axis:
    # W&B's Bayesian search reads a categorical's probabilities through its quantile function.
    weighted = isinstance(param, Categorical) and param.probabilities and method == "bayes"
    if isinstance(param, Categorical) and not weighted:
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
        flat[axis.path] = axis.decode(suggest(trial, axis.name, axis.distribution))
    ordered = {path: flat[path] for path, _ in spec.leaves()}
    return grid.nest(ordered)


def suggest(trial: Trial, name: str, dist: BaseDistribution) -> Any:
    """The trial's value of `name`, drawn from `dist` through Optuna's public suggest API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def encode(axis: Axis, value: Any) -> Any:
    """A W&B value as Optuna stores it on `axis`."""
    dist = axis.distribution
    if isinstance(dist, CategoricalDistribution):
        if not axis.indexed:
            return value
        return next(i for i in dist.choices if axis.decode(i) is value)
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return min(max(value, dist.low), dist.high)  # float rounding at the ends of the range
