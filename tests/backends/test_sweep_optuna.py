"""The Optuna translation: samplers give the W&B search space, the pruner applies W&B's rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner, Result
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from kmnist.backends.optuna.bridge import (
    WandbHyperbandPruner,
    WandbRandomSampler,
    plan,
    suggest_config,
)
from kmnist.errors import UserError
from kmnist.sweep import distributions, grid, hyperband, load
from kmnist.sweep.objective import WANDB_STARTUP
from kmnist.sweep.source import Source
from kmnist.sweep.validate import check_source

ROOT = Path(__file__).resolve().parents[2]
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
    assert configs == list(grid.points(spec.parameters))  # every point once, in W&B's order
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
    assert type(plan(spec).sampler.inner).__name__ == "GPSampler"
    assert type(plan(spec, bayes="tpe").sampler.inner).__name__ == "TPESampler"
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
    scheduled = spec_of(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metric": {"name": "acc", "goal": "maximize"},
            "parameters": {"a": {"value": 1}},
        }
    )
    steps = plan(scheduled)  # W&B's Optuna scheduler: TPE over W&B's distributions, no pruner
    assert steps.wandb_scheduler and type(steps.sampler).__name__ == "TPESampler"
    assert steps.distributions == {"a": CategoricalDistribution([1])}
    custom = spec_of(
        {"method": "custom", "metric": {"name": "acc"}, "parameters": {"a": {"value": 1}}}
    )
    with pytest.raises(UserError, match="W&B scheduler only"):
        plan(custom)  # custom with no scheduler engine: a W&B scheduler of its own
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


def _offline(tmp_path: Path, body: dict) -> tuple[str, str]:
    from kmnist.backends.optuna.backend import create_sweep

    spec = spec_of(body)
    url = str(tmp_path / "s.journal")
    return create_sweep(json.dumps(body), spec, "objective", url), url


BAYES_HB = {
    "program": "kmnist/wandb_entry.py",
    "method": "bayes",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3},
    "parameters": {"model": {"value": "cnn"}, "lr": {"min": 0.001, "max": 0.1}},
}


def test_a_trial_scores_its_best_epoch_and_stopped_ones_keep_theirs(tmp_path: Path) -> None:
    from kmnist.backends import open_control
    from kmnist.backends.optuna.backend import OptunaSweep
    from kmnist.results.leaderboard import rows

    sweep_id, url = _offline(tmp_path, BAYES_HB)
    sweep = OptunaSweep(sweep_id, url, seed=0)
    done = sweep.next_trial()
    history = [{"val/accuracy": v} for v in (0.5, 0.9, 0.7)]
    for epoch, metrics in enumerate(history, 1):
        sweep.report(done, epoch, metrics)
    sweep.finish(done, "completed", {"val/accuracy": 0.7}, history)
    stopped = sweep.next_trial()
    short = [{"val/accuracy": 0.95}, {"val/accuracy": 0.6}]
    for epoch, metrics in enumerate(short, 1):
        sweep.report(stopped, epoch, metrics)
    sweep.finish(stopped, "stopped", {"val/accuracy": 0.6}, short)
    assert sweep.study.best_value == 0.9  # the best epoch, not the last (W&B's extremum)
    board = rows(open_control(sweep_id, url).trials(), "maximize", "val/accuracy")
    assert [(r["state"], r["best val/accuracy"]) for r in board] == [
        ("completed", 0.9),
        ("pruned", 0.95),
    ]


def _created_with(tmp_path: Path, args: list[str], env: dict[str, str]) -> Result:
    """`kmnist-sweep create BAYES_HB --backend optuna` on a journal file in tmp_path."""
    from kmnist.cli import main

    path = tmp_path / "bayes.yaml"
    path.write_text(json.dumps(BAYES_HB))  # JSON is YAML
    storage = str(tmp_path / "s.journal")
    words = ["create", str(path), "--backend", "optuna", "--storage", storage, *args]
    return CliRunner().invoke(main, words, env=env)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, 2),  # W&B's start
        (["--bayes-startup", "5"], {}, 5),
        ([], {"KMNIST_BAYES_STARTUP": "4"}, 4),
        (["--bayes-startup", "3"], {"KMNIST_BAYES_STARTUP": "4"}, 3),  # the option wins
    ],
    ids=["default", "option", "env", "option-over-env"],
)
def test_bayes_startup_is_wandbs_and_can_be_set_at_create(
    tmp_path: Path, monkeypatch, args: list[str], env: dict[str, str], expected: int
) -> None:
    from kmnist.backends.optuna.backend import OptunaSweep

    def random_draws(sweep: OptunaSweep) -> int:
        """How many trials the sampler draws at random before it models."""
        space = {"lr": FloatDistribution(0.001, 0.1)}
        for n in range(12):
            ticket = sweep.next_trial()
            frozen = sweep.study.get_trials()[-1]
            if sweep.plan.sampler.sample_relative(sweep.study, frozen, space):
                return n
            sweep.finish(ticket, "completed", {"val/accuracy": 0.1 * n}, [])
        return -1

    monkeypatch.delenv("KMNIST_BAYES_STARTUP", raising=False)
    result = _created_with(tmp_path, args, env)
    assert result.exit_code == 0, result.output
    sweep = OptunaSweep(result.stdout.strip(), str(tmp_path / "s.journal"), seed=0)
    assert random_draws(sweep) == expected
    assert WANDB_STARTUP == 2


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--bayes-startup", "0"], {}), ([], {"KMNIST_BAYES_STARTUP": "zero"})],
    ids=["zero", "not-a-number"],
)
def test_a_bad_bayes_startup_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = _created_with(tmp_path, args, env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bayes-startup" in lines[0], result.stderr
    assert not (tmp_path / "s.journal").exists()  # nothing created


def test_command_words_reach_the_trainer_offline(tmp_path: Path, monkeypatch) -> None:
    from kmnist.backends.optuna.backend import OptunaSweep

    monkeypatch.setenv("KMNIST_SEED", "11")
    body = {
        **BAYES_HB,
        "method": "random",
        "command": ["python", "-m", "kmnist.wandb_entry", "--epochs=3", "--lr=5",
                    "--seed=${envvar:KMNIST_SEED}", "${args}"],
        "parameters": {"model": {"value": "cnn"}, "lr": {"value": 0.2}},
    }  # fmt: skip
    sweep_id, url = _offline(tmp_path, body)
    ticket = OptunaSweep(sweep_id, url).next_trial()
    # As W&B's agent passes them: the words, then the run's config over them (its param file),
    # typed once at create; the envvar read with this agent's environment.
    assert ticket.config == {"epochs": 3, "lr": 0.2, "seed": 11, "model": "cnn"}
    with_group = {**body, "parameters": {"optim": {"parameters": {"lr": {"value": 0.2}}}}}
    assert check_source(Source(data=with_group))[1]  # lr twice: W&B's runs would fail
