"""W&B's Ax scheduler (`method: custom`, `scheduler.engine: ax`) on the offline engine, as an
Optuna sampler over the sweep's stored study.

After `wandb.sdk.sweeps.scheduler.ax` (wandb 0.31): each parameter of the file becomes one Ax
parameter by W&B's table (`ax_parameter`); the objectives are the goals of `metrics` (or of
`metric`), each "minimize" unless "maximize"; a finished run is told its summary's value of each
objective (`scheduler.told_values`), failed when it failed, was stopped, or never logged them
all; W&B's default Ax client stops no run early.

W&B runs one scheduler process holding one Ax `Client`. Offline, agents on many hosts share only
the study, so each ask rebuilds the Client from the sweep's definition and the study's trials:
finished ones told as W&B tells them, running and queued ones attached as pending (Ax proposes
away from them); its generation strategy is moved on to where a long-lived Client would stand
(`_caught_up`), and asked for one trial. Every agent so gets the same optimizer, whatever it ran
itself. One departure: a long-lived Client walks one Sobol sequence in its initial phase; rebuilt
per trial, each initial point is the first of a sequence seeded by the trial's number, so it is
uniform at random rather than low-discrepancy.

Ax is optional (`pip install '.[ax]'`); without it, one line says what to install.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends.optuna import ax_logs
from kmnist.errors import UserError
from kmnist.sweep.spec import form_of, is_int, scheduler_choices

if TYPE_CHECKING:
    from kmnist.backends.optuna.user_code import UserAxClient

INSTALL = "pip install '.[ax]' (the ax-platform package)"
WAIT_SECONDS = 5.0  # Ax wants results of running trials before its next proposal: ask again


class AxDone(Exception):
    """Ax ended the search (every point of a finite space proposed); says which trial asked."""

    def __init__(self, number: int) -> None:
        super().__init__("Ax proposes no more trials: its search space is exhausted")
        self.number = number


def require() -> None:
    """UserError unless Ax can be imported here."""
    if importlib.util.find_spec("ax") is None:
        raise UserError(f"scheduler engine ax needs Ax on this machine: {INSTALL}")


# -- W&B's parameter table -------------------------------------------------------------------
def ax_parameter(name: str, param: Mapping[str, Any]) -> Any:
    """The Ax parameter config W&B's Ax scheduler builds for one sweep parameter."""
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

    if scheduler_choices(param):
        values = list(param["values"]) if "values" in param else [param["value"]]
        kind = _value_type(values)
        return ChoiceParameterConfig(
            name=name, values=values, parameter_type=kind, is_ordered=False
        )
    low, high = param["min"], param["max"]
    form = form_of(param)  # the named distribution, or the one W&B infers from min and max
    if form == "int_uniform":
        return RangeParameterConfig(name=name, bounds=(int(low), int(high)), parameter_type="int")
    if form == "uniform":
        return RangeParameterConfig(
            name=name, bounds=(float(low), float(high)), parameter_type="float"
        )
    if form == "log_uniform_values":
        bounds = (float(low), float(high))
        return RangeParameterConfig(name=name, bounds=bounds, parameter_type="float", scaling="log")
    if form == "q_uniform":
        step = param.get("q", 1)
        kind = "int" if all(is_int(v) for v in (low, high, step)) else "float"
        bounds = (float(low), float(high))
        return RangeParameterConfig(name=name, bounds=bounds, parameter_type=kind, step_size=step)
    # q_log_uniform_values with q 1 (validate refuses any other q, and every other form)
    bounds = (int(low), int(high))
    return RangeParameterConfig(name=name, bounds=bounds, parameter_type="int", scaling="log")


def _value_type(values: Sequence[Any]) -> str:
    """Ax's parameter_type of a list of choices (validate keeps them of one kind)."""
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(is_int(v) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "str"


# -- the sampler -----------------------------------------------------------------------------
class AxSampler(BaseSampler):
    """Each trial's parameters, proposed by an Ax Client rebuilt from the study (see above)."""

    def __init__(
        self,
        parameters: Mapping[str, Mapping[str, Any]],
        objectives: Sequence[tuple[str, str]],
        seed: int | None = None,
        user: UserAxClient | None = None,
    ) -> None:
        require()
        ax_logs.quiet()  # before Ax is first imported
        self.configs = {name: ax_parameter(name, param) for name, param in parameters.items()}
        self.distributions = {name: _distribution(c) for name, c in self.configs.items()}
        self.objectives, self.seed, self.user = list(objectives), seed or 0, user

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Ax's proposal for `trial`; while Ax waits on running trials' results, asked again."""
        while (proposed := self._proposal(study, trial)) is None:
            time.sleep(WAIT_SECONDS)
        for name, distribution in self.distributions.items():
            if name not in proposed or not _holds(distribution, proposed[name]):
                raise UserError(
                    f"scheduler.optimizer: the Ax client proposed {name}="
                    f"{proposed.get(name, 'nothing')!r} for trial {trial.number}, outside the "
                    f"sweep file's parameter {name}: give the client the file's parameters"
                )
        return proposed

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        raise RuntimeError(f"Ax proposed no value of {param_name} for trial {trial.number}")

    def _proposal(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any] | None:
        """One trial from a Client rebuilt for `trial`; None: Ax wants results first."""
        from ax.exceptions.core import DataRequiredError, OptimizationComplete
        from ax.exceptions.generation_strategy import MaxParallelismReachedException

        with warnings.catch_warnings():  # Ax's deprecations and notes: nothing a user can act on
            warnings.simplefilter("ignore")
            client = self.client_for(study, trial.number)
            try:
                ((_, params),) = client.get_next_trials(max_trials=1).items()
            except (DataRequiredError, MaxParallelismReachedException):
                return None
            except OptimizationComplete:
                raise AxDone(trial.number) from None
        return dict(params)

    def client_for(self, study: optuna.Study, asking: int) -> Any:
        """The Client that proposes trial `asking`: seeded by its number, told every other trial
        of the study, its generation strategy caught up."""
        client = self._client(seed=self.seed * 1_000_003 + asking)
        names = [name for name, _ in self.objectives]
        _told(client, study.get_trials(deepcopy=False), asking, self.configs, names)
        _caught_up(client)
        return client

    def terminated(self, study: optuna.Study) -> bool:
        """The user's terminator, given a Client told the whole study."""
        assert self.user is not None and self.user.terminator is not None
        return bool(self.user.terminator(self.client_for(study, asking=-1)))

    def _client(self, seed: int) -> Any:
        """The user's client (their factory, called afresh), else W&B's default client
        (`create_default_client`): the file's parameters, its objectives named as they are (not
        parsed as an expression)."""
        if self.user is not None:
            return self.user.make()
        from ax.api.client import Client
        from ax.core.metric import Metric
        from ax.core.objective import MultiObjective, Objective
        from ax.core.optimization_config import (
            MultiObjectiveOptimizationConfig,
            OptimizationConfig,
        )

        client = Client(random_seed=seed)
        client.configure_experiment(parameters=list(self.configs.values()))
        metrics = [
            Metric(name=name, lower_is_better=goal != "maximize") for name, goal in self.objectives
        ]
        with ax_logs.errors_only():  # each is "not found on experiment, added": how they get there
            client.configure_metrics(metrics)
        objectives = [Objective(metric=metric) for metric in metrics]
        if len(objectives) == 1:
            client.set_optimization_config(OptimizationConfig(objective=objectives[0]))
        else:
            objective = MultiObjective(objectives=objectives)
            client.set_optimization_config(MultiObjectiveOptimizationConfig(objective=objective))
        return client


def _told(
    client: Any,
    trials: Sequence[FrozenTrial],
    asking: int,
    configs: Mapping[str, Any],
    names: Sequence[str],
) -> None:
    """The study's trials as W&B's AxOptimizer knows them: completed with their values (in the
    order of `names`, the sweep's objectives), failed, or pending (running or queued). Trials
    without every parameter (the one asking) are left out, as W&B leaves out runs whose config
    does not cover the search space; values are cast to each parameter's type, as W&B does."""
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.number == asking or not all(name in trial.params for name in configs):
            continue
        params = {name: _CAST[c.parameter_type](trial.params[name]) for name, c in configs.items()}
        index = client.attach_trial(parameters=params)
        if trial.state == TrialState.COMPLETE:
            raw_data = dict(zip(names, trial.values, strict=True))
            client.complete_trial(trial_index=index, raw_data=raw_data)
        elif trial.state.is_finished():  # failed, stopped (PRUNED): W&B marks them failed
            client.mark_trial_failed(trial_index=index)


_CAST = {"int": int, "float": float, "bool": bool, "str": str}


def _holds(distribution: BaseDistribution, value: Any) -> bool:
    """Whether the study can store `value` as a draw from `distribution`."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    return isinstance(value, (int, float)) and distribution.low <= value <= distribution.high


def _distribution(config: Any) -> BaseDistribution:
    """The Optuna distribution that holds what Ax proposes for one parameter (the study stores
    each trial's parameters with one)."""
    if hasattr(config, "values"):  # a ChoiceParameterConfig
        return CategoricalDistribution(list(config.values))
    low, high = config.bounds
    log, step = config.scaling == "log", config.step_size
    if config.parameter_type == "int":
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(low, high, log=log, step=step)


def _caught_up(client: Any) -> None:
    """Move the generation strategy on as far as the attached trials allow.

    Why private: a long-lived Client moves from its initial nodes (center point, Sobol) to the
    model (MBM) as its trials come in; a Client rebuilt with the trials attached makes one move
    per ask, so it would stay in Sobol for ever. This is the move Ax itself makes before it
    generates, run to its end.
    """
    strategy = client._generation_strategy_or_choose()
    strategy._maybe_transition_to_next_node(raise_data_required_error=False)
