"""The Optuna translation: samplers give the W&B search space, the pruner applies W&B's rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from kmnist.backends.optuna.bridge import (
    WandbHyperbandPruner,
    WandbRandomSampler,
    plan,
    suggest_config,
)
from kmnist.errors import UserError
from kmnist.sweep import distributions, grid, hyperband, load
from kmnist.sweep.source import Source
from kmnist.sweep.validate import check_source

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def spec_of(config: dict) -> object:
    spec, problems = check_source(Source(data={"program": "x.py", **config}))
    assert not problems, problems
    return spec


def run(spec, trials: int, seed: int = 0, bayes: str = "tpe") -> list[dict]:
    steps = plan(spec, seed=seed, bayes=bayes)
    study = optuna.create_study(direction=steps.direction, sampler=steps.sampler)
    configs: list[dict] = []
    study.optimize(lambda t: configs.append(suggest_config(t, spec)) or 0.0, n_trials=trials)
    return configs


def in_domain(spec, config: dict) -> bool:
    return all(distributions.in_domain(p, _get(config, path)) for path, p in spec.leaves())


def _get(config: dict, path: tuple[str, ...]) -> object:
    for key in path:
        config = config[key]
    return config


def test_grid_sampler_covers_the_exact_product() -> None:
    spec = spec_of(
        {
            "method": "grid",
            "parameters": {
                "a": {"values": [1, 2, [3, 4]]},
                "g": {"parameters": {"x": {"min": 1, "max": 3}, "k": {"value": "c"}}},
                "q": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.5},
            },
        }
    )
    configs = run(spec, trials=30)  # the grid sampler stops the study after 3*3*2 trials
    key = lambda c: json.dumps(c, sort_keys=True)  # noqa: E731
    assert sorted(map(key, configs)) == sorted(map(key, grid.points(spec.parameters)))
    assert len(configs) == 18


def test_shipped_grid_runs_every_point_once() -> None:
    spec = load(ROOT / "sweeps" / "knn_grid.yaml")
    configs = run(spec, trials=100)
    assert len(configs) == 40 == len({json.dumps(c, sort_keys=True) for c in configs})


def test_random_sampler_draws_wandb_laws() -> None:
    spec = spec_of(
        {
            "method": "random",
            "parameters": {
                "opt": {"values": ["adam", "sgd"], "probabilities": [0.9, 0.1]},
                "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
                "n": {"distribution": "q_normal", "mu": 10, "sigma": 2, "q": 1},
                "p": {"distribution": "beta", "a": 2, "b": 5},
                "g": {"parameters": {"w": {"min": 1, "max": 4}, "v": {"values": [[1], {"a": 2}]}}},
            },
        }
    )
    steps = plan(spec, seed=1)
    assert isinstance(steps.sampler, WandbRandomSampler)
    configs = run(spec, trials=300, seed=1)
    assert all(in_domain(spec, c) for c in configs)
    share = sum(c["opt"] == "adam" for c in configs) / len(configs)
    assert 0.84 < share < 0.96
    logs = np.log10([c["lr"] for c in configs])
    assert abs(logs.mean() - -3) < 0.25  # uniform on [-5, -1] in log10
    assert {json.dumps(c["g"]["v"]) for c in configs} == {"[1]", '{"a": 2}'}


def test_bayes_samplers_stay_in_the_domain() -> None:
    spec = load(ROOT / "sweeps" / "cnn_hyperband.yaml")
    assert type(plan(spec).sampler).__name__ == "GPSampler"
    assert type(plan(spec, bayes="tpe").sampler).__name__ == "TPESampler"
    configs = run(spec, trials=15, bayes="tpe")
    assert all(in_domain(spec, c) for c in configs)
    with pytest.raises(UserError, match="expected gp or tpe"):
        plan(spec, bayes="cma")


def test_direction_cap_target_and_custom() -> None:
    spec = spec_of(
        {
            "method": "random",
            "metric": {"name": "acc", "goal": "maximize", "target": 0.9},
            "run_cap": 7,
            "parameters": {"a": {"values": [1]}},
        }
    )
    steps = plan(spec)
    assert (steps.direction, steps.run_cap, steps.target) == ("maximize", 7, 0.9)
    assert steps.target_reached(0.95) and not steps.target_reached(0.85)
    custom = spec_of(
        {"method": "custom", "scheduler": {"engine": "optuna"}, "parameters": {"a": {"value": 1}}}
    )
    with pytest.raises(UserError, match="W&B scheduler only"):
        plan(custom)
    default = spec_of(
        {"method": "random", "metric": {"name": "loss"}, "parameters": {"a": {"value": 1}}}
    )
    assert plan(default).direction == "minimize"


@pytest.mark.parametrize(
    ("early", "goal"),
    [
        ({"min_iter": 1, "eta": 3}, "maximize"),
        ({"min_iter": 1, "eta": 2, "strict": False}, "minimize"),
        ({"max_iter": 9, "s": 2, "eta": 3}, "minimize"),
        ({"max_iter": 12, "s": 3, "eta": 2, "strict": False}, "maximize"),
    ],
)
def test_pruner_applies_wandb_rule_to_the_study(early: dict, goal: str) -> None:
    spec = spec_of(
        {
            "method": "random",
            "metric": {"name": "m", "goal": goal},
            "parameters": {"a": {"value": 1}},
            "early_terminate": {"type": "hyperband", **early},
        }
    )
    pruner = plan(spec).pruner
    assert isinstance(pruner, WandbHyperbandPruner)
    rng = np.random.default_rng(3)
    study = optuna.create_study(direction=goal, pruner=pruner)
    histories: dict[int, list[float]] = {}
    dist = {"a": FloatDistribution(0, 1)}
    for number in range(12):  # finished and failed trials set the thresholds
        values = rng.integers(0, 5, int(rng.integers(1, 12))).astype(float).tolist()
        state = TrialState.COMPLETE if number % 3 else TrialState.FAIL
        study.add_trial(
            create_trial(
                state=state,
                value=values[-1] if state == TrialState.COMPLETE else None,
                params={"a": 0.5},
                distributions=dist,
                intermediate_values=dict(enumerate(values, start=1)),
            )
        )
        histories[number] = values
    decisions = 0
    for _ in range(6):  # running trials report epoch by epoch
        trial = study.ask()
        values = rng.integers(0, 5, 10).astype(float).tolist()
        for epoch, value in enumerate(values, start=1):
            trial.report(value, epoch)
            histories[trial.number] = values[:epoch]
            expected = hyperband.to_stop(
                histories,
                [trial.number],
                spec.early_terminate.brackets(),
                spec.early_terminate.eta,
                goal,
                spec.early_terminate.strict,
            )
            assert trial.should_prune() == bool(expected)
            decisions += bool(expected)
            if expected:
                break
        study.tell(
            trial,
            state=TrialState.PRUNED if expected else TrialState.COMPLETE,
            values=None if expected else values[-1],
        )
    assert decisions > 0
