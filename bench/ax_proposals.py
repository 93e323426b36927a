"""Seconds per proposal of the Ax engine (`scheduler.engine: ax`), whose Client is rebuilt from
the study for each trial, at 5, 10, 20 and 30 trials told, with one and with two objectives.
Trials are told made-up values (no training): this is the engine's own cost per trial.

    python bench/ax_proposals.py
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from kmnist.backends.optuna.ax_sampler import AxSampler
from kmnist.backends.optuna.axes import suggest

SPACE = {
    "model": {"value": "knn"},
    "k": {"min": 1, "max": 30},
    "weights": {"values": ["uniform", "distance"]},
    "pca_components": {"distribution": "q_uniform", "min": 0, "max": 60, "q": 10},
}
MEASURED_AT = (5, 10, 20, 30)


def seconds_per_proposal(objectives: list[tuple[str, str]]) -> dict[int, float]:
    sampler = AxSampler(SPACE, objectives, seed=0)
    study = optuna.create_study(directions=[goal for _, goal in objectives], sampler=sampler)
    noise, seconds = random.Random(0), {}
    for n in range(max(MEASURED_AT) + 1):
        started = time.perf_counter()
        trial = study.ask()
        params = {name: suggest(trial, name, d) for name, d in sampler.distributions.items()}
        if n in MEASURED_AT:
            seconds[n] = round(time.perf_counter() - started, 2)
        accuracy = 1 - abs(params["k"] - 7) / 30 + noise.random() / 50
        study.tell(trial, [accuracy, params["k"] * 1000.0][: len(objectives)])
    return seconds


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    one = [("val/accuracy", "maximize")]
    result = {
        "machine": describe(),
        "one objective": seconds_per_proposal(one),
        "two objectives": seconds_per_proposal([*one, ("parameters", "minimize")]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
