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


@dataclass(frozen=True)
class PlanChoices:
    """What a plan may take besides the spec: the seed, the Bayesian model and its random start,
    and the user's own study (a scheduler sweep's `source`)."""

    seed: int | None = None
    bayes: str = "gp"
    startup: int | None = None
    user: UserStudy | UserAxClient | None = None


def plan(
    spec: SweepSpec,
    seed: int | None = None,
    bayes: str = "gp",
    startup: int | None = None,
    user: UserStudy | UserAxClient | None = None,
) -> StudyPlan:
    """The study that runs `spec` as W&B would: one plan per way of searching (PLANS)."""
    planned = PLANS.get(spec.search)
    if planned is None:  # create refuses it (`engines.offline_refusals`): a stored one only
        raise UserError(
            f"method {spec.method} runs on a W&B scheduler only; the Optuna engine runs "
            "grid, random and bayes, and the optuna and ax schedulers"
        )
    return planned(spec, PlanChoices(seed, bayes, startup, user))


def _planned(spec: SweepSpec, sampler: BaseSampler) -> StudyPlan:
    """A plain sweep's study: W&B's sampler, its hyperband rule, run_cap and target."""
    target = spec.metric.target if spec.metric else None
    return StudyPlan(spec.goal, sampler, make_pruner(spec), spec.run_cap, target)


def _grid(spec: SweepSpec, choices: PlanChoices) -> StudyPlan:
    return _planned(spec, WandbGridSampler(spec))


def _random(spec: SweepSpec, choices: PlanChoices) -> StudyPlan:
    return _planned(spec, WandbRandomSampler(spec, choices.seed))


def _bayes(spec: SweepSpec, choices: PlanChoices) -> StudyPlan:
    """W&B's Bayes data under a model; random draws until `startup` runs have a value."""
    startup = WANDB_STARTUP if choices.startup is None else choices.startup
    if startup < 1:
        raise UserError(f"bayes startup trials: expected a whole number >= 1, got {startup}")
    seed = choices.seed
    if choices.bayes == "gp":
        model: BaseSampler = GPSampler(seed=seed, n_startup_trials=startup)
    elif choices.bayes == "tpe":
        with quiet_experimental():  # multivariate: the whole point at once, as the GP does
            model = TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    else:
        raise UserError(f"unknown Bayesian sampler {choices.bayes!r}: expected gp or tpe")
    return _planned(spec, WandbBayesSampler(spec, model, seed))


def make_pruner(spec: SweepSpec) -> BasePruner:
    early = spec.early_terminate
    if early is None:
        return NopPruner()
    return WandbHyperbandPruner(early.brackets(), early.eta, early.strict)


def _optuna_scheduler(spec: SweepSpec, choices: PlanChoices) -> StudyPlan:
    """The study W&B's Optuna scheduler makes (`build_optuna_optimizer`): with no user code,
    Optuna's default sampler (TPE) over the file's parameters as W&B converts them and no
    pruner (`create_study_from_sweep_config`); else the user's sampler, pruner, terminator and
    search space, where given."""
    user = choices.user or UserStudy()
    assert isinstance(user, UserStudy)
    parameters = spec.raw.get("parameters") or {}
    space = None if user.search_space else scheduler.distributions(parameters)
    return StudyPlan(
        spec.goal,
        user.sampler or TPESampler(seed=choices.seed),
        user.pruner or NopPruner(),
        spec.run_cap,
        None,
        wandb_scheduler=True,
        distributions=space,
        search_space=user.search_space,
        terminator=user.terminator,
    )


def _ax_scheduler(spec: SweepSpec, choices: PlanChoices) -> StudyPlan:
    """W&B's Ax scheduler: the user's Ax client, else W&B's default one, proposes each trial
    (`ax_sampler`), with no pruner."""
    client = choices.user if isinstance(choices.user, UserAxClient) else None
    parameters = spec.raw.get("parameters") or {}
    ax = AxSampler(parameters, spec.objectives, choices.seed, client)
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


# One entry per way of searching; validation lets through only what one of them runs.
PLANS: dict[str, Callable[[SweepSpec, PlanChoices], StudyPlan]] = {
    "grid": _grid,
    "random": _random,
    "bayes": _bayes,
    "optuna": _optuna_scheduler,
    "ax": _ax_scheduler,
}
