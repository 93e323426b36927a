"""Runs under W&B's `sweeps` package (its own venv): answers a batch of JSON requests on stdin.

Requests: {"op": "violations", "config": ...} → messages (W&B's schema check);
{"op": "grid", "config": ...} → every config its grid search proposes, nested plain values;
{"op": "stop", "config": ..., "runs": [{"name", "state", "history"}]} → names it stops.
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

import sweeps  # noqa: E402
from sweeps import RunState, SweepRun  # noqa: E402


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
    return [run.name for run in sweeps.stop_runs(config, built)]


def answer(request):
    if request["op"] == "violations":
        return violations(request["config"])
    if request["op"] == "grid":
        return grid(request["config"])
    return stop(request["config"], request["runs"])


print(json.dumps([answer(r) for r in json.load(sys.stdin)]))
