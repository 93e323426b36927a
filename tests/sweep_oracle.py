"""Runs under W&B's `sweeps` package (its own venv): answers a batch of JSON requests on stdin.

Requests: {"op": "violations", "config": ...} → messages (W&B's schema check);
{"op": "grid", "config": ...} → every config its grid search proposes, in order, plain values;
{"op": "stop", "config": ..., "runs": [{"name", "state", "history"}]} → names it stops, or
"raised: ..." when its engine raises; {"op": "next", "config": ...} → the config it proposes
(validate=False: with validate=True it drops nested groups); {"op": "gp_data", "config": ...,
"runs": [{"state", "history", "summary", "x"}]} → the (x, value) pairs its Bayesian search
learns from; {"op": "startup", "config": ...} → how many finished runs it needs to model.
"""

import json
import math
import sys
import warnings

warnings.filterwarnings("ignore")

import sweeps  # noqa: E402
from sweeps import RunState, SweepRun, bayes_search  # noqa: E402


def violations(config):
    try:
        return sweeps.schema_violations_from_proposed_config(config)
    except Exception as exc:  # W&B raises on some malformed configs instead of listing them
        return [f"raised: {exc}"]


def grid(config):
    runs, found = [], []
    while True:
        (run,) = sweeps.next_runs(config, runs)
        if run is None:
            return found
        runs.append(SweepRun(config=run.config, state=RunState.finished))
        found.append({k: v["value"] for k, v in run.config.items()})


def stop(config, runs):
    # pydantic 2 drops `history=` given by field name: pass the alias
    built = [
        SweepRun(name=r["name"], state=RunState(r["state"]), **{"sampledHistory": r["history"]})
        for r in runs
    ]
    try:
        return [run.name for run in sweeps.stop_runs(config, built)]
    except Exception as exc:
        return f"raised: {type(exc).__name__}: {exc}"


def proposed(config):
    run = sweeps.next_run(config, [], validate=False)
    return {k: v["value"] for k, v in run.config.items()}


def gp_data(config, runs):
    """W&B's training set: the x of each run it learns from, and its value (goal's sign)."""
    name = config["metric"]["name"]
    built = [
        SweepRun(
            state=RunState(r["state"]),
            config={"x": {"value": r["x"]}},
            **{"sampledHistory": [{name: v} for v in r["history"]]},
            **{"summaryMetrics": {name: r["summary"]} if r["summary"] is not None else {}},
        )
        for r in runs
    ]
    filled = bayes_search.bayes_baseline_validate_and_fill(config)
    _, sample_x, _, y, _ = bayes_search._construct_gp_data(built, filled)
    sign = -1.0 if filled["metric"]["goal"] == "maximize" else 1.0
    return [[float(row[0]), float(sign * v)] for row, v in zip(sample_x, y, strict=True)]


def startup(config):
    """The fewest finished runs after which W&B's Bayesian search fits a model."""
    name = config["metric"]["name"]
    for count in range(10):
        runs = [
            SweepRun(
                state=RunState.finished,
                config={"x": {"value": (i + 0.5) / 10}},
                **{"summaryMetrics": {name: float(i)}},
            )
            for i in range(count)
        ]
        info = bayes_search.bayes_search_next_run(runs, config).search_info
        if not math.isnan(info["predicted_value_std_dev"]):
            return count
    return None


def answer(request):
    op = request["op"]
    if op == "violations":
        return violations(request["config"])
    if op == "grid":
        return grid(request["config"])
    if op == "next":
        return proposed(request["config"])
    if op == "gp_data":
        return gp_data(request["config"], request["runs"])
    if op == "startup":
        return startup(request["config"])
    return stop(request["config"], request["runs"])


print(json.dumps([answer(r) for r in json.load(sys.stdin)]))
