"""The trainer's rules for a sweep that runs it: its parameters, its metrics, its command line.

The names and domains come from the trainer itself (`kmnist.trainer.params`, `.metrics`), never
from a copy; these rules apply only when the sweep runs this project's trainer.
"""

from __future__ import annotations

import math
from typing import Any

from kmnist.sweep import distributions
from kmnist.sweep.source import Path_, Report
from kmnist.sweep.spec import Categorical, Constant, Nested, Param
from kmnist.sweep.text import hint
from kmnist.trainer import metrics
from kmnist.trainer.params import PARAMS, ConfigError, coerce, unknown_key_message
from kmnist.trainer.params import Param as Knob

# The command macros that hand the trainer its parameters as --name=value.
ARGS_MACROS = ("${args}", "${args_no_equals}")


def check(report: Report, data: dict[Any, Any], parameters: dict[str, Param]) -> None:
    command = data.get("command")
    if isinstance(command, list) and not set(ARGS_MACROS) & set(map(str, command)):
        report.add(
            ("command",), "the trainer reads its parameters as --name=value: add ${args} to command"
        )
    metric = data.get("metric")
    if isinstance(metric, dict) and isinstance(metric.get("name"), str):
        check_metric(report, metric["name"])
    for name, param in parameters.items():
        check_parameter(report, ("parameters", name), name, param)


def check_metric(report: Report, name: str) -> None:
    if name in metrics.TEST:
        report.add(
            ("metric", "name"),
            f"{name} scores the test set, which a sweep must never tune on: use val/accuracy",
        )
    elif name not in metrics.OBJECTIVES:
        report.add(
            ("metric", "name"),
            f"the trainer does not log {name!r}{hint(name, metrics.OBJECTIVES)}; "
            f"it logs {', '.join(metrics.OBJECTIVES)}",
        )


def check_parameter(report: Report, path: Path_, name: str, param: Param) -> None:
    if name not in PARAMS:
        report.add(path, unknown_key_message(name))
        return
    if isinstance(param, Nested):
        report.add(path, f"the trainer takes flat parameters; '{name}' is a group")
        return
    knob = PARAMS[name]
    if isinstance(param, Constant | Categorical):
        check_values(report, path, knob, param)
    elif knob.type in (str, bool):
        kinds = "|".join(knob.choices) if knob.choices else "true|false"
        report.add(path, f"'{name}' takes {kinds}: list them under values")
    elif knob.type is int and not distributions.integer_valued(param):
        report.add(
            path,
            f"'{name}' takes integers and {param.distribution} draws floats: "
            "use int_uniform, values, or an integer q",
        )
    else:
        check_bounds(report, path, knob, param)


def check_values(report: Report, path: Path_, knob: Knob, param: Constant | Categorical) -> None:
    if isinstance(param, Constant):
        items: list[tuple[Path_, Any]] = [((*path, "value"), param.value)]
    else:
        items = [((*path, "values", f"[{i}]"), v) for i, v in enumerate(param.values)]
    for item_path, value in items:
        try:
            coerce(knob, value)
        except ConfigError as exc:
            report.add(item_path, str(exc).split(": ", 1)[-1])


def check_bounds(report: Report, path: Path_, knob: Knob, param: Param) -> None:
    low, high = distributions.support(param) or (-math.inf, math.inf)
    below = knob.low is not None and low < knob.low
    above = knob.high is not None and high > knob.high
    if below or above:
        allowed = f"[{_bound(knob.low, '-inf')}, {_bound(knob.high, 'inf')}]"
        report.add(
            path,
            f"{param.distribution} reaches [{low:g}, {high:g}] but '{knob.name}' takes {allowed}",
        )


def _bound(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"
