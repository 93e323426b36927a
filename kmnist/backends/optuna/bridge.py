"""A sweep spec as Optuna pieces: sampler, direction, pruner, trial cap, target, trial config.

- grid → `WandbGridSampler`: the exact product (`grid.values` of each parameter), visited in
  W&B's order, so a run_cap below the grid size covers the points W&B's engine would;
- random → `WandbRandomSampler`, which draws from W&B's own laws (probabilities, normal and beta
  priors included), not from Optuna's look-alikes;
- bayes → `WandbBayesSampler` around `GPSampler` (default) or `TPESampler`, shown the runs as
  W&B's engine scores them (`kmnist.sweep.objective`). Laws Optuna cannot express (quantized,
  normal, beta, categorical with probabilities) are searched on the unit interval and mapped
  through the law's quantile function, as W&B's own Bayesian search does;
- early_terminate: hyperband → `WandbHyperbandPruner`, W&B's rule over the study's trials.
Parameter names are the group path joined by "/" (W&B names cannot hold "/").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner, NopPruner
from optuna.samplers import BaseSampler, GPSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from kmnist.backends.optuna import scheduler
from kmnist.backends.optuna.ax_sampler import AxSampler
from kmnist.backends.optuna.axes import Axis, axes, suggest_config
from kmnist.backends.optuna.samplers import (
    WandbBayesSampler,
    WandbGridSampler,
    WandbRandomSampler,
    quiet_experimental,
)
from kmnist.backends.optuna.user_code import UserAxClient, UserStudy
from kmnist.errors import UserError
from kmnist.sweep import hyperband
from kmnist.sweep.engines import scheduler_engine
from kmnist.sweep.objective import WANDB_STARTUP
from kmnist.sweep.spec import SweepSpec

__all__ = [
    "Axis",
    "StudyPlan",
    "WandbBayesSampler",
    "WandbGridSampler",
    "WandbHyperbandPruner",
    "WandbRandomSampler",
    "axes",
    "plan",
    "suggest_config",
]


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
    # W&B's Optuna scheduler (`method: custom`): its trials are told their summary's values and
    # report epochs at W&B's steps (`scheduler.py`); it asks with `distributions` (define-and-
    # run), or runs the user's `search_space` on each trial (define-by-run); the user's
    # `terminator`, when given, ends the sweep.
    wandb_scheduler: bool = False
    distributions: dict[str, BaseDistribution] | None = None
    search_space: Callable[[Trial], dict[str, Any]] | None = None
    terminator: Callable[[Study], bool] | None = None

    def target_reached(self, value: float) -> bool:
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target


def make_sampler(
    spec: SweepSpec, seed: int | None = None, bayes: str = "gp", startup: int | None = None
) -> BaseSampler:
    if spec.method == "grid":
        return WandbGridSampler(spec)
    if spec.method == "random":
        return WandbRandomSampler(spec, seed)
    if spec.method == "bayes":
        return WandbBayesSampler(spec, _bayes_sampler(bayes, seed, startup), seed)
    raise UserError(
        f"method {spec.method} runs on a W&B scheduler only; the Optuna engine runs "
        "grid, random and bayes"
    )


def _bayes_sampler(bayes: str, seed: int | None, startup: int | None) -> BaseSampler:
    """The model under W&B's Bayes data; random draws until `startup` runs have a value."""
    startup = WANDB_STARTUP if startup is None else startup
    if startup < 1:
        raise UserError(f"bayes startup trials: expected a whole number >= 1, got {startup}")
    if bayes == "gp":
        return GPSampler(seed=seed, n_startup_trials=startup)
    if bayes == "tpe":
        with quiet_experimental():  # multivariate: the whole point at once, as the GP does
            return TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    raise UserError(f"unknown Bayesian sampler {bayes!r}: expected gp or tpe")


def make_pruner(spec: SweepSpec) -> BasePruner:
    early = spec.early_terminate
    if early is None:
        return NopPruner()
    return WandbHyperbandPruner(early.brackets(), early.eta, early.strict)


def plan(
    spec: SweepSpec,
    seed: int | None = None,
    bayes: str = "gp",
    startup: int | None = None,
    user: UserStudy | UserAxClient | None = None,
) -> StudyPlan:
    if scheduler_engine(spec) in ("optuna", "ax"):
        return scheduler_plan(spec, seed, user)
    target = spec.metric.target if spec.metric else None
    sampler = make_sampler(spec, seed, bayes, startup)
    return StudyPlan(spec.goal, sampler, make_pruner(spec), spec.run_cap, target)


def scheduler_plan(
    spec: SweepSpec, seed: int | None = None, user: UserStudy | UserAxClient | None = None
) -> StudyPlan:
    """The study W&B's Optuna scheduler makes (`build_optuna_optimizer`): with no user code,
    Optuna's default sampler (TPE) over the file's parameters as W&B converts them and no
    pruner (`create_study_from_sweep_config`); else the user's sampler, pruner, terminator and
    search space, where given. On the Ax engine, the user's Ax client, else W&B's default one,
    proposes each trial (`ax_sampler`), with no pruner."""
    user = user or UserStudy()
    parameters = spec.raw.get("parameters") or {}
    if scheduler_engine(spec) == "ax":
        client = user if isinstance(user, UserAxClient) else None
        ax = AxSampler(parameters, spec.objectives, seed, client)
        return StudyPlan(
            spec.goal,
            ax,
            NopPruner(),
            spec.run_cap,
            None,
            wandb_scheduler=True,
            distributions=ax.distributions,
            terminator=ax.terminated if client and client.terminator else None,
        )
    assert not isinstance(user, UserAxClient)
    space = None if user.search_space else scheduler.distributions(parameters)
    return StudyPlan(
        spec.goal,
        user.sampler or TPESampler(seed=seed),
        user.pruner or NopPruner(),
        spec.run_cap,
        None,
        wandb_scheduler=True,
        distributions=space,
        search_space=user.search_space,
        terminator=user.terminator,
    )
