"""Conformance with W&B's own sweep engine (PyPI `sweeps`), run as an oracle in its own venv.

`sweeps` pins numpy<2, so it lives in .venv-sweeps (see .ci/run); $WANDB_SWEEPS_PYTHON names
another interpreter that has it. One subprocess answers each test's whole batch of questions.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kmnist.sweep import grid, hyperband
from kmnist.sweep.source import Source
from kmnist.sweep.spec import build
from kmnist.sweep.validate import check_source

ROOT = Path(__file__).resolve().parents[1]
ORACLE_PYTHON = Path(os.environ.get("WANDB_SWEEPS_PYTHON", ROOT / ".venv-sweeps/bin/python"))
ORACLE = Path(__file__).with_name("sweep_oracle.py")

pytestmark = pytest.mark.skipif(
    not ORACLE_PYTHON.exists(),
    reason=f"W&B's sweeps package is not installed at {ORACLE_PYTHON}: run "
    "`python3 -m venv .venv-sweeps && .venv-sweeps/bin/pip install sweeps==0.3.0` "
    "or set WANDB_SWEEPS_PYTHON",
)


def ask(requests: list[dict[str, Any]]) -> list[Any]:
    done = subprocess.run(
        [str(ORACLE_PYTHON), str(ORACLE)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def ours_valid(config: dict[str, Any]) -> bool:
    return not check_source(Source(data=config))[1]


def sweep(**kw: Any) -> dict[str, Any]:
    """A config run by another program, so only W&B's format rules apply."""
    return {"program": "train.py", "method": "random", **kw}


P = {"a": {"values": [1, 2]}}
METRIC = {"name": "loss", "goal": "minimize"}

VALID = [
    sweep(parameters=P),
    sweep(method="grid", parameters={"a": {"value": 3}, "b": {"values": ["x", "y"]}}),
    sweep(parameters={"a": {"min": 1, "max": 5}, "b": {"min": 0.0, "max": 1}}),
    sweep(parameters={"a": {"distribution": "uniform", "min": 0, "max": 2}}),
    sweep(parameters={"a": {"distribution": "int_uniform", "min": -3, "max": 3}}),
    sweep(parameters={"a": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.1}}),
    sweep(parameters={"a": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1.0}}),
    sweep(parameters={"a": {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 10}}),
    sweep(parameters={"a": {"distribution": "q_log_uniform_values", "min": 1, "max": 256}}),
    sweep(parameters={"a": {"distribution": "normal"}, "b": {"distribution": "q_normal"}}),
    sweep(parameters={"a": {"distribution": "log_normal", "mu": 1, "sigma": 0.5}}),
    sweep(parameters={"a": {"distribution": "q_log_normal", "q": 2}}),
    sweep(parameters={"a": {"distribution": "beta", "a": 2, "b": 5}}),
    sweep(parameters={"a": {"distribution": "q_beta", "q": 0.1}}),
    sweep(parameters={"a": {"values": [1, 2, 3], "probabilities": [0.2, 0.3, 0.5]}}),
    sweep(parameters={"a": {"distribution": "constant", "value": [1, 2]}}),
    sweep(parameters={"a": {"distribution": "categorical", "values": [{"x": 1}, [2]]}}),
    sweep(parameters={"g": {"parameters": {"x": {"values": [1, 2]}, "y": {"value": 0}}}}),
    sweep(method="bayes", metric=METRIC, parameters=P, run_cap=10),
    sweep(metric={"name": "acc", "goal": "maximize", "target": 0.99}, parameters=P),
    sweep(metric=METRIC, parameters=P, early_terminate={"type": "hyperband", "min_iter": 2}),
    sweep(
        metric=METRIC,
        parameters=P,
        early_terminate={"type": "hyperband", "max_iter": 27, "s": 3, "eta": 3, "strict": False},
    ),
    sweep(parameters=P, command=["${env}", "python", "${program}", "${args}"], name="n"),
    sweep(parameters=P, project="p", entity="e", description="d", controller={"type": "local"}),
    sweep(method="custom", scheduler={"engine": "optuna", "source": "s.py"}, parameters=P),
    *(yaml.safe_load(path.read_text()) for path in sorted((ROOT / "sweeps").glob("*.yaml"))),
]

INVALID = [
    {"parameters": P},
    sweep(method="bayesian", parameters=P),
    sweep(parameters=P, run_cap=0),
    sweep(parameters=P, paramters=P),
    sweep(),
    sweep(parameters={}),
    sweep(parameters={"a": {"values": []}}),
    sweep(parameters={"a": {"values": [1, 2], "probabilities": [1.0]}}),
    sweep(parameters={"a": {"values": [1, 2], "probabilities": [0.5, 0.6]}}),
    sweep(parameters={"a": {"values": [1], "probabilities": [1], "distribution": "categorical"}}),
    sweep(parameters={"a": {"min": 5, "max": 1}}),
    sweep(parameters={"a": {"min": 1.0, "max": 1.0}}),
    sweep(parameters={"a": {"min": "1e-5", "max": 0.1}}),
    sweep(parameters={"a": {"min": 1}}),
    sweep(parameters={"a": {"min": 0.0, "max": 1.0, "q": 0.1}}),
    sweep(parameters={"a": {"distribution": "loguniform", "min": 1, "max": 2}}),
    sweep(parameters={"a": {"distribution": "log_uniform", "min": -5, "max": 0}}),
    sweep(parameters={"a": {"distribution": "q_log_uniform", "min": -5, "max": 0}}),
    sweep(parameters={"a": {"distribution": "inv_log_uniform", "min": -5, "max": 0}}),
    sweep(parameters={"a": {"distribution": "log_uniform_values", "min": 0, "max": 1}}),
    sweep(parameters={"a": {"distribution": "int_uniform", "min": 0.5, "max": 3}}),
    sweep(parameters={"a": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}}),
    sweep(parameters={"a": {"distribution": "normal", "sigma": -1}}),
    sweep(parameters={"a": {"distribution": "normal", "min": 0}}),
    sweep(parameters={"a": {"value": 1, "values": [1]}}),
    sweep(parameters={"a": 0.1}),
    sweep(parameters={"my lr": {"value": 1}}),
    sweep(parameters={"g": {"parameters": {}}}),
    sweep(parameters={"g": {"parameters": {"x": {"value": 1}}, "value": 2}}),
    sweep(metric={"goal": "maximize"}, parameters=P),
    sweep(metric={"name": "acc", "goal": "maximise"}, parameters=P),
    sweep(metric={"name": "acc", "goals": "maximize"}, parameters=P),
    sweep(metric=METRIC, parameters=P, early_terminate={"type": "hyperband"}),
    sweep(metric=METRIC, parameters=P, early_terminate={"type": "hyperband", "min_iter": 0}),
    sweep(metric=METRIC, parameters=P, early_terminate={"type": "hb", "min_iter": 1}),
    sweep(
        metric=METRIC, parameters=P, early_terminate={"type": "hyperband", "min_iter": 1, "eta": 1}
    ),
    sweep(metric=METRIC, parameters=P, early_terminate="hyperband"),
    sweep(parameters=P, command="python train.py"),
    sweep(parameters=P, program=3),
    sweep(parameters=P, kind="run"),
    sweep(parameters=P, metrics=[METRIC, METRIC]),
    sweep(parameters=P, metric=METRIC, metrics=[METRIC, METRIC], method="custom"),
    {"method": "custom", "scheduler": {"engine": "wandb"}, "parameters": P},
]

# Where this project refuses what W&B's schema lets through, because W&B's engine then fails or
# does something no one wants (DESIGN: "It does not catch ...").
STRICTER = [
    sweep(method="bayes", parameters=P),  # bayes without a metric
    sweep(parameters=P, early_terminate={"type": "hyperband", "min_iter": 1}),  # no metric
    sweep(method="grid", parameters={"a": {"min": 0.0, "max": 1.0}}),  # grid over a continuum
    sweep(method="grid", parameters={"a": {"values": [1, 2], "probabilities": [0.5, 0.5]}}),
    sweep(parameters={"g": {"parameters": {"x": {"min": 3, "max": 1}}}}),  # nested min > max
    sweep(parameters={"a": {"distribution": "beta", "a": 0}}),  # NaN draws
    sweep(
        metric=METRIC,
        parameters=P,
        early_terminate={"type": "hyperband", "max_iter": 27, "min_iter": 1},  # s missing
    ),
    sweep(
        metric=METRIC,
        parameters=P,
        early_terminate={"type": "hyperband", "max_iter": 2, "s": 1},  # no bracket at all
    ),
    sweep(parameters=P, command=["python", "${progam}"]),  # the agent drops unknown macros
]


def test_validity_agrees_with_wandb_schema() -> None:
    answers = ask([{"op": "violations", "config": c} for c in VALID + INVALID + STRICTER])
    wandb_valid = [not a for a in answers]
    expected = [True] * len(VALID) + [False] * len(INVALID)
    disagree = [
        (config, answer)
        for config, ok, want, answer in zip(
            VALID + INVALID, wandb_valid, expected, answers, strict=False
        )
        if ok != want or ours_valid(config) != want
    ]
    assert not disagree
    assert all(wandb_valid[len(VALID) + len(INVALID) :]), "STRICTER cases are valid to W&B"
    assert not any(ours_valid(c) for c in STRICTER)


GRIDS = [
    {"a": {"values": [1, 2, 3]}, "b": {"value": "x"}},
    {"a": {"values": [1, 1.0, 2, "2", True]}, "b": {"min": 1, "max": 4}},
    {"a": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.3}},
    {"a": {"distribution": "q_uniform", "min": 1, "max": 10, "q": 3}},
    {"a": {"distribution": "int_uniform", "min": -2, "max": 2}, "c": {"values": [[1, 2], [3]]}},
    {"g": {"parameters": {"x": {"values": [1, 2]}, "y": {"min": 0, "max": 2}}}, "z": {"value": 0}},
    {"g": {"parameters": {"h": {"parameters": {"x": {"values": ["p", "q"]}}}}}},
]


def _canonical(configs: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(c, sort_keys=True) for c in configs)


def test_grid_enumerates_the_same_points_as_wandb() -> None:
    configs = [{"method": "grid", "parameters": p} for p in GRIDS]
    answers = ask([{"op": "grid", "config": c} for c in configs])
    for config, answer in zip(configs, answers, strict=True):
        ours = list(grid.points(build(config).parameters))
        assert _canonical(ours) == _canonical(answer), config
        assert len(ours) == grid.size(build(config).parameters)


SETTINGS = [
    {"min_iter": 1, "eta": 3},
    {"min_iter": 1, "eta": 3, "strict": False},
    {"min_iter": 2, "eta": 2},
    {"min_iter": 1, "eta": 1.5, "strict": False},
    {"max_iter": 27, "s": 3, "eta": 3},
    {"max_iter": 10, "s": 2, "eta": 2.5, "strict": False},
    {"max_iter": 12, "s": 4, "eta": 2},
]


def _runs(rng: np.random.Generator, ties: bool) -> list[dict[str, Any]]:
    runs = []
    for index in range(int(rng.integers(3, 15))):
        length = int(rng.integers(0, 14))
        values = rng.integers(0, 4, length) if ties else rng.normal(size=length)
        history = [{"m": float(v)} if rng.random() > 0.05 else {"other": 1} for v in values]
        state = str(rng.choice(["running", "running", "finished", "failed", "killed"]))
        runs.append({"name": f"r{index}", "state": state, "history": history})
    return runs


def test_hyperband_stops_the_same_runs_as_wandb() -> None:
    rng = np.random.default_rng(7)
    requests, cases = [], []
    for setting in SETTINGS:
        for goal in ("minimize", "maximize"):
            for trial in range(6):
                runs = _runs(rng, ties=trial % 2 == 0)
                config = {
                    "method": "random",
                    "metric": {"name": "m", "goal": goal},
                    "parameters": P,
                    "early_terminate": {"type": "hyperband", **setting},
                }
                requests.append({"op": "stop", "config": config, "runs": runs})
                cases.append((config, runs))
    answers = ask(requests)
    stopped_any = 0
    for (config, runs), answer in zip(cases, answers, strict=True):
        spec = build(config)
        early = spec.early_terminate
        assert early is not None
        histories = {r["name"]: [h["m"] for h in r["history"] if "m" in h] for r in runs}
        running = [r["name"] for r in runs if r["state"] == "running"]
        ours = hyperband.to_stop(
            histories, running, early.brackets(), early.eta, spec.goal, early.strict
        )
        assert ours == answer, (config, runs)
        stopped_any += bool(answer)
    assert stopped_any > len(cases) // 3  # the cases exercise stopping, not just "keep going"
