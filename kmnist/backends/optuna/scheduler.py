"""W&B's Optuna scheduler (`method: custom`, `scheduler.engine: optuna`), as the offline engine
runs it: what `wandb sweep-scheduler` does with a study, without W&B's server.

After `wandb.sdk.sweeps.scheduler.optuna` (wandb 0.31): every parameter of the file becomes
one Optuna distribution by W&B's table (`distribution`); the study's directions are the goals
of `metrics` (or of `metric`), each "minimize" when unset; a run is told by its summary's value
of each objective (not the best epoch: W&B's optimizer reads `summary_metrics`), failed when it
failed or finished without every objective; a single-objective trial reports each logged epoch
at W&B's `_step` (the epoch's index from 0) for the study's pruner.
`tests/backends/test_scheduler_sweeps.py` holds this module against W&B's own functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from kmnist.sweep import schema
from kmnist.sweep.spec import is_int, scheduler_choices

# W&B's forms that map onto Optuna's distributions; the rest have no Optuna equivalent.
CONVERTED = schema.OPTUNA_FORMS


class NotConvertible(ValueError):
    """A parameter W&B's Optuna scheduler cannot turn into a distribution; says why."""


def distribution(param: Mapping[str, Any]) -> BaseDistribution:
    """The Optuna distribution W&B's Optuna scheduler builds for one sweep parameter."""
    if scheduler_choices(param):
        return _choices(param)
    if "parameters" in param:
        raise NotConvertible("a nested group: W&B's Optuna scheduler searches flat parameters")
    form = param.get("distribution") or _inferred(param)
    if form not in CONVERTED:
        raise NotConvertible(f"distribution {form} has no Optuna equivalent")
    low, high, step = param["min"], param["max"], param.get("q", 1)
    if form == "int_uniform":
        return IntDistribution(low, high)
    if form == "uniform":
        return FloatDistribution(low, high)
    if form == "log_uniform_values":
        return FloatDistribution(low, high, log=True)
    if form == "q_uniform":
        if all(is_int(v) for v in (low, high, step)):
            return IntDistribution(low, high, step=step)
        return FloatDistribution(low, high, step=step)
    if step != 1 or low < 1:  # q_log_uniform_values Optuna cannot step: W&B drops q
        return FloatDistribution(low, high, log=True)
    return IntDistribution(low, high, log=True, step=int(step))


def _choices(param: Mapping[str, Any]) -> CategoricalDistribution:
    """`values`, else the one `value`: W&B's shorthands, whatever `distribution` says."""
    return CategoricalDistribution(list(param["values"]) if "values" in param else [param["value"]])


def _inferred(param: Mapping[str, Any]) -> str:
    if "min" not in param or "max" not in param:
        raise NotConvertible("no distribution, values or min/max to build one from")
    ints = is_int(param["min"]) and is_int(param["max"])
    return "int_uniform" if ints else "uniform"


def distributions(parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    """The search space of the file's `parameters`, name by name, as W&B builds it."""
    return {name: distribution(param) for name, param in parameters.items()}


def told_values(summary: Mapping[str, Any], names: Sequence[str]) -> list[float] | None:
    """The values a finished run is told with (its summary's), or None: told as failed."""
    values = [summary.get(name) for name in names]
    if any(value is None for value in values):
        return None
    return values


def step_of(epoch: int) -> int:
    """W&B's `_step` of epoch `epoch` (from 1): the agent logs once per epoch, from step 0."""
    return epoch - 1
