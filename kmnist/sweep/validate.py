"""Check a sweep file against W&B's sweep format and, for the project's trainer, its parameters.

Every problem is collected, with its key path and line, so a user fixes a file in one pass.
The format rules are W&B's (its schema plus what its engine refuses at run time); the trainer
rules apply only when the sweep runs this project's trainer, so any valid W&B sweep validates.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from kmnist.sweep import distributions, grid
from kmnist.sweep.source import Path_, Problem, Source, number_spelling, read
from kmnist.sweep.spec import (
    DEPRECATED,
    DISTRIBUTIONS,
    GOALS,
    METHODS,
    Categorical,
    Constant,
    Nested,
    Param,
    SweepSpec,
    build,
    build_parameters,
    form_of,
    keys_of,
    required_keys,
    runs_project_trainer,
)
from kmnist.trainer.params import PARAMS, ConfigError, coerce, unknown_key_message

TOP_KEYS = (
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "program",
    "command",
    "name",
    "description",
    "project",
    "entity",
    "controller",
    "metrics",
    "scheduler",
    "job",
    "image_uri",
    "apiVersion",
    "kind",
)
STRING_KEYS = (
    "program",
    "name",
    "description",
    "project",
    "entity",
    "job",
    "image_uri",
    "apiVersion",
)
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
IMPUTE = ("latest", "best", "worst")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
SCHEDULER_KEYS = ("engine", "source", "optimizer", "search_space")
ENGINE_METHODS = {"wandb": ("grid", "bayes", "random"), "optuna": ("custom",), "ax": ("custom",)}
# What `wandb agent` substitutes in `command` (wandb_agent.py, sdk/launch/sweeps/utils.py).
MACROS = (
    "env",
    "interpreter",
    "program",
    "args",
    "args_no_equals",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_json",
    "args_json_file",
    "args_append_hydra",
    "args_override_hydra",
)
_MACRO = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # W&B's schema for parameter names
# What the trainer logs: per epoch, then in its summary. Never the test set as an objective.
TRAINER_METRICS = (
    "val/accuracy",
    "val/loss",
    "train/loss",
    "val/best_accuracy",
    "epoch_time",
    "wall_time",
)
TEST_METRICS = ("test/accuracy", "test/loss", "kmnist_val_acc")


def check_file(path: Path) -> tuple[SweepSpec | None, list[Problem]]:
    """The spec of a clean file, or None and every problem found."""
    source = read(path)
    return check_source(source)


def check_source(source: Source) -> tuple[SweepSpec | None, list[Problem]]:
    if source.problems and source.data is None:
        return None, source.problems
    problems = source.problems + Checker(source).run(source.data)
    problems.sort(key=lambda p: p.line)
    return (None if problems else build(source.data)), problems


def dotted(path: Path_) -> str:
    """("parameters", "lr", "values", "[0]") → parameters.lr.values[0]."""
    return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(path))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _yaml_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        try:
            return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        except yaml.YAMLError:
            return "a list" if isinstance(value, list) else "a mapping"
    return str(value)


def _hint(word: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _macro_hint(name: str) -> str:
    return _hint(f"${{{name}}}", [f"${{{macro}}}" for macro in MACROS])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # JSON schema's "integer": 5 or 5.0, never true/false
    return _is_number(value) and float(value).is_integer()


def _expected_number(value: Any, what: str = "a number") -> str:
    """'expected a number, got ...', with the fix for PyYAML's `1e-5`-is-a-string pitfall."""
    text = f"expected {what}, got {_show(value)}"
    whole = "whole" in what or "integer" in what
    fixed = number_spelling(value, whole) if isinstance(value, str) else None
    if fixed:
        return f"{text}: YAML reads {value.strip()} as a string; write {fixed}"
    return text


class Checker:
    """Walks the raw mapping once, collecting problems with their lines."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(dotted(path), message, self.source.line(path)))

    def run(self, data: Any) -> list[Problem]:
        if not isinstance(data, dict):
            self.add(
                (),
                f"expected a mapping of sweep keys (method, metric, parameters), got "
                f"{_yaml_text(data) if not isinstance(data, str) else 'text'}",
            )
            return self.problems
        self.top(data)
        return self.problems

    # -- top level -------------------------------------------------------------------------
    def top(self, data: dict[Any, Any]) -> None:
        for key in data:
            if key not in TOP_KEYS:
                self.add((str(key),), f"unknown sweep key{_hint(key, TOP_KEYS)}")
        self.method(data)
        for key in STRING_KEYS:
            if key in data and not isinstance(data[key], str):
                self.add((key,), f"expected a string, got {_show(data[key])}")
        if "kind" in data and data["kind"] != "sweep":
            self.add(("kind",), f"expected 'sweep', got {_show(data['kind'])}")
        if "command" in data:
            self.command(data["command"])
        if "run_cap" in data and not (_is_integer(data["run_cap"]) and data["run_cap"] > 0):
            self.add(("run_cap",), _expected_number(data["run_cap"], "a whole number > 0"))
        if "controller" in data:
            self.controller(data["controller"])
        self.objectives(data)
        if "scheduler" in data:
            self.scheduler(data)
        if "early_terminate" in data:
            self.early_terminate(data)
        self.parameters_section(data)

    def method(self, data: dict[Any, Any]) -> None:
        if "method" not in data:
            self.add((), "missing 'method': expected grid, random or bayes")
        elif data["method"] not in METHODS:
            got = data["method"]
            self.add(
                ("method",),
                f"expected grid, random or bayes, got {_show(got)}{_hint(got, METHODS)}",
            )

    def command(self, command: Any) -> None:
        if not isinstance(command, list):
            self.add(("command",), f"expected a list of words, got {_show(command)}")
            return
        for index, word in enumerate(command):
            for name in _MACRO.findall(str(word)):
                if name not in MACROS and not name.startswith("envvar:"):
                    self.add(
                        ("command", f"[{index}]"),
                        f"unknown macro '${{{name}}}'{_macro_hint(name)}: the agent would drop it",
                    )

    def controller(self, controller: Any) -> None:
        if not isinstance(controller, dict):
            self.add(("controller",), f"expected a mapping, got {_show(controller)}")
        elif controller.get("type") not in ("local", "cloud"):
            self.add(
                ("controller", "type"),
                f"expected local or cloud, got {_show(controller.get('type'))}",
            )

    # -- metric / metrics -------------------------------------------------------------------
    def objectives(self, data: dict[Any, Any]) -> None:
        if "metric" in data:
            self.metric(("metric",), data["metric"])
        if "metrics" in data:
            self.metrics(data)
        needs = "bayes search" if data.get("method") == "bayes" else None
        needs = needs or ("early_terminate" if "early_terminate" in data else None)
        if needs and "metric" not in data and "metrics" not in data:
            self.add((), f"{needs} needs a metric: add metric: {{name: ..., goal: ...}}")

    def metric(self, path: Path_, metric: Any) -> None:
        if not isinstance(metric, dict):
            self.add(path, f"expected a mapping with name and goal, got {_show(metric)}")
            return
        for key in metric:
            if key not in METRIC_KEYS:
                self.add((*path, str(key)), f"unknown metric key{_hint(key, METRIC_KEYS)}")
        if "name" not in metric:
            self.add(path, "missing 'name': the metric the runs log, such as val/accuracy")
        elif not isinstance(metric["name"], str):
            self.add((*path, "name"), f"expected a string, got {_show(metric['name'])}")
        if "goal" in metric and metric["goal"] not in GOALS:
            self.add(
                (*path, "goal"),
                f"expected minimize or maximize, got "
                f"{_show(metric['goal'])}{_hint(metric['goal'], GOALS)}",
            )
        if "target" in metric and not _is_number(metric["target"]):
            self.add((*path, "target"), _expected_number(metric["target"]))
        if "impute" in metric and metric["impute"] not in IMPUTE:
            self.add(
                (*path, "impute"), f"expected latest, best or worst, got {_show(metric['impute'])}"
            )
        if metric.get("impute_while_running", "false") not in (*IMPUTE, "false"):
            self.add((*path, "impute_while_running"), "expected latest, best, worst or false")

    def metrics(self, data: dict[Any, Any]) -> None:
        metrics = data["metrics"]
        if not isinstance(metrics, list) or len(metrics) < 2:
            self.add(("metrics",), "expected a list of at least two metrics")
            return
        for index, metric in enumerate(metrics):
            self.metric(("metrics", f"[{index}]"), metric)
        if "metric" in data:
            self.add(("metrics",), "metric and metrics cannot both be set")
        elif data.get("method") in ("grid", "random", "bayes"):
            self.add(
                ("metrics",),
                f"metrics (multi-objective) needs method: custom, got {data['method']}",
            )

    def scheduler(self, data: dict[Any, Any]) -> None:
        scheduler = data["scheduler"]
        if not isinstance(scheduler, dict):
            self.add(("scheduler",), f"expected a mapping, got {_show(scheduler)}")
            return
        for key, value in scheduler.items():
            if key not in SCHEDULER_KEYS:
                self.add(("scheduler", str(key)), f"unknown key{_hint(key, SCHEDULER_KEYS)}")
            elif not isinstance(value, str):
                self.add(("scheduler", key), f"expected a string, got {_show(value)}")
        engine = scheduler.get("engine")
        if engine not in ENGINE_METHODS:
            self.add(("scheduler", "engine"), f"expected optuna, ax or wandb, got {_show(engine)}")
        elif data.get("method") not in ENGINE_METHODS[engine]:
            self.add(
                ("method",),
                f"scheduler engine {engine} runs method {' or '.join(ENGINE_METHODS[engine])}",
            )
        if any(k in scheduler for k in ("optimizer", "search_space")) and "source" not in scheduler:
            self.add(("scheduler",), "optimizer and search_space need source")
        if "early_terminate" in data:
            self.add(("early_terminate",), "cannot be used with scheduler")
        controller = data.get("controller")
        if isinstance(controller, dict) and controller.get("type") == "local":
            self.add(("controller",), "a local controller cannot be used with scheduler")

    # -- early_terminate --------------------------------------------------------------------
    def early_terminate(self, data: dict[Any, Any]) -> None:
        path: Path_ = ("early_terminate",)
        early = data["early_terminate"]
        if not isinstance(early, dict):
            self.add(
                path,
                f"expected a mapping such as {{type: hyperband, min_iter: 1}}, got {_show(early)}",
            )
            return
        for key in early:
            if key not in HYPERBAND_KEYS:
                self.add((*path, str(key)), f"unknown hyperband key{_hint(key, HYPERBAND_KEYS)}")
        if early.get("type") != "hyperband":
            self.add(
                (*path, "type") if "type" in early else path,
                f"expected type: hyperband, got {_show(early.get('type'))}",
            )
        before = len(self.problems)
        self.hyperband_numbers(path, early)
        if len(self.problems) == before and "type" in early:
            self.hyperband_brackets(path, early)

    def hyperband_numbers(self, path: Path_, early: dict[Any, Any]) -> None:
        whole = {"min_iter": 1, "max_iter": 1, "s": 1}
        for key, least in whole.items():
            if key in early and not (_is_integer(early[key]) and early[key] >= least):
                self.add((*path, key), _expected_number(early[key], "a whole number >= 1"))
        if "eta" in early and not (_is_number(early["eta"]) and early["eta"] > 1):
            self.add((*path, "eta"), _expected_number(early["eta"], "a number > 1"))
        if "strict" in early and not isinstance(early["strict"], bool):
            self.add((*path, "strict"), f"expected true or false, got {_show(early['strict'])}")
        if "max_iter" in early and "s" not in early:
            self.add(path, "max_iter needs s, the number of brackets below it")
        elif "min_iter" not in early and "max_iter" not in early:
            self.add(path, "hyperband needs min_iter, or max_iter and s")

    def hyperband_brackets(self, path: Path_, early: dict[Any, Any]) -> None:
        from kmnist.sweep.hyperband import brackets

        eta = early.get("eta", 3)
        bands = brackets(early.get("min_iter"), early.get("max_iter"), early.get("s"), eta)
        if not bands:
            self.add(
                (*path, "max_iter"),
                f"no brackets: max_iter/eta = "
                f"{early['max_iter'] / eta:g} < 1; raise max_iter or lower eta",
            )

    # -- parameters -------------------------------------------------------------------------
    def parameters_section(self, data: dict[Any, Any]) -> None:
        scheduler = data.get("scheduler")
        if "parameters" not in data:
            if not (isinstance(scheduler, dict) and scheduler.get("search_space")):
                self.add((), "missing 'parameters': the search space, one entry per parameter")
            return
        clean = self.parameters(("parameters",), data["parameters"])
        # The cross-checks below read the well-formed parameters; the others are reported.
        parameters = build_parameters({name: data["parameters"][name] for name in clean})
        if data.get("method") == "grid":
            self.grid(
                parameters, data.get("run_cap"), complete=len(clean) == len(data["parameters"])
            )
        if runs_project_trainer(data):
            self.trainer(data, parameters)

    def parameters(self, path: Path_, parameters: Any) -> list[Any]:
        """Check a parameters mapping; the names of its well-formed entries."""
        if not isinstance(parameters, dict) or not parameters:
            self.add(
                path,
                "expected a mapping of one or more parameters, such as "
                f"lr: {{min: 0.0001, max: 0.1}}, got {_show(parameters)}",
            )
            return []
        clean = []
        for name, raw in parameters.items():
            before = len(self.problems)
            if not isinstance(name, str) or not _NAME.match(name):
                self.add(
                    (*path, str(name)),
                    "parameter names start with a letter or _ and hold only letters, digits, _ . -",
                )
            self.parameter((*path, str(name)), raw)
            if len(self.problems) == before:
                clean.append(name)
        return clean

    def parameter(self, path: Path_, raw: Any) -> None:
        if not isinstance(raw, dict) or not raw:
            self.add(path, _not_a_parameter(raw))
            return
        form = form_of(raw)
        if form is None:
            self.unknown_form(path, raw)
        elif form == "nested":
            for key in raw:
                if key != "parameters":
                    self.add((*path, str(key)), "a group holds only 'parameters'")
            self.parameters((*path, "parameters"), raw["parameters"])
        else:
            self.form(path, form, raw)

    def unknown_form(self, path: Path_, raw: dict[Any, Any]) -> None:
        if "distribution" in raw:
            named = raw["distribution"]
            self.add(
                (*path, "distribution"),
                f"unknown distribution {_show(named)}{_hint(named, DISTRIBUTIONS)}",
            )
        elif "min" in raw or "max" in raw:
            missing = "max" if "min" in raw else "min"
            self.add(path, f"missing '{missing}': min and max go together")
        else:
            known = ("value", "values", "min", "max", "distribution", "parameters")
            first = next(iter(raw))
            self.add(
                (*path, str(first)),
                f"cannot tell the distribution: expected value, "
                f"values, min and max, distribution or parameters{_hint(first, known)}",
            )

    def form(self, path: Path_, form: str, raw: dict[Any, Any]) -> None:
        allowed = (*keys_of(form), "distribution")
        for key in raw:
            if key not in allowed:
                self.add(
                    (*path, str(key)),
                    f"not a key of a {form} parameter, which takes "
                    f"{', '.join(allowed)}{_hint(key, allowed)}",
                )
        for key in required_keys(form):
            if key not in raw:
                self.add(path, f"{form} needs '{key}'")
        if form in ("constant", "categorical", "categorical_w_probabilities"):
            self.choices(path, raw)
        else:
            self.numbers(path, form, raw)

    def choices(self, path: Path_, raw: dict[Any, Any]) -> None:
        values = raw.get("values", [None])
        if not isinstance(values, list) or not values:
            self.add((*path, "values"), f"expected a non-empty list, got {_show(values)}")
            return
        if "probabilities" not in raw:
            return
        probabilities = raw["probabilities"]
        if not isinstance(probabilities, list) or not all(
            _is_number(p) and p >= 0 for p in probabilities
        ):
            self.add((*path, "probabilities"), "expected a list of numbers >= 0")
        elif len(probabilities) != len(values):
            self.add(
                (*path, "probabilities"),
                f"{len(probabilities)} probabilities for {len(values)} values: give one per value",
            )
        elif not math.isclose(sum(probabilities), 1.0, rel_tol=1e-5, abs_tol=1e-8):
            self.add((*path, "probabilities"), f"sum to {sum(probabilities):g}, not 1")

    def numbers(self, path: Path_, form: str, raw: dict[Any, Any]) -> None:
        before = len(self.problems)
        for key in keys_of(form):
            if key in raw:
                self.number((*path, key), form, key, raw[key])
        if len(self.problems) > before or "min" not in raw or "max" not in raw:
            return
        low, high = raw["min"], raw["max"]
        if low >= high:
            self.add((*path, "min"), f"min {low:g} is not less than max {high:g}")
        elif form.endswith("_values") and low <= 0:
            self.add(
                (*path, "min"),
                f"{form} takes the logarithm of its bounds: min must be > 0, got {low:g}",
            )
        elif form in DEPRECATED:
            self.add(
                (*path, "distribution"),
                f"{form} reads min/max as base-e exponents and "
                f"W&B refuses it: use {DEPRECATED[form]} with min: {math.exp(low):.3g}, "
                f"max: {math.exp(high):.3g}",
            )

    def number(self, path: Path_, form: str, key: str, value: Any) -> None:
        if form == "int_uniform" and key in ("min", "max"):
            if not (isinstance(value, int) and not isinstance(value, bool)):
                self.add(path, _expected_number(value, "an integer (int_uniform)"))
            return
        if not _is_number(value) or not math.isfinite(value):
            self.add(path, _expected_number(value, "a finite number"))
        elif key == "q" and value <= 0:
            self.add(path, f"q is a step: expected a number > 0, got {value:g}")
        elif key == "sigma" and value < 0:
            self.add(path, f"expected a number >= 0, got {value:g}")
        elif key in ("a", "b") and value <= 0:
            self.add(path, f"a beta law needs a > 0 and b > 0, got {value:g}")

    # -- cross-checks on a well-formed search space ------------------------------------------
    def grid(self, parameters: dict[str, Param], run_cap: Any, complete: bool) -> None:
        from kmnist.sweep.spec import leaves

        continuous = False
        for leaf, param in leaves(parameters):
            path = ("parameters", *_param_path(leaf))
            if isinstance(param, Categorical) and param.probabilities:
                self.add(
                    (*path, "probabilities"),
                    "grid search takes every value once: drop probabilities, or use method: random",
                )
                continuous = True
            elif not grid.is_discrete(param):
                self.add(
                    path,
                    f"grid search needs discrete parameters, and "
                    f"{param.distribution} is not: use values, int_uniform or q_uniform",
                )
                continuous = True
        if continuous or not complete:
            return
        points = grid.size(parameters)
        if points > grid.MAX_POINTS:  # what an engine can list, whatever run_cap says
            self.add(
                ("parameters",),
                f"the grid has {grid.shown(points)} points, over the {grid.MAX_POINTS:,} "
                "an engine can list (grid search enumerates every point, with or without "
                "run_cap): narrow it, or use method: random",
            )
            return
        bounded = _is_integer(run_cap) and run_cap <= grid.LIMIT
        if points > grid.LIMIT and not bounded:
            self.add(
                ("parameters",),
                f"the grid has {points:,} points, over {grid.LIMIT:,}: "
                "narrow it, or set run_cap to bound the sweep",
            )

    def trainer(self, data: dict[Any, Any], parameters: dict[str, Param]) -> None:
        command = data.get("command")
        if isinstance(command, list) and not {"${args}", "${args_no_equals}"} & set(
            map(str, command)
        ):
            self.add(
                ("command",),
                "the trainer reads its parameters as --name=value: add ${args} to command",
            )
        metric = data.get("metric")
        if isinstance(metric, dict) and isinstance(metric.get("name"), str):
            self.trainer_metric(metric["name"])
        for name, param in parameters.items():
            self.trainer_parameter(("parameters", name), name, param)

    def trainer_metric(self, name: str) -> None:
        if name in TEST_METRICS:
            self.add(
                ("metric", "name"),
                f"{name} scores the test set, which a sweep must never tune on: use val/accuracy",
            )
        elif name not in TRAINER_METRICS:
            self.add(
                ("metric", "name"),
                f"the trainer does not log {name!r}"
                f"{_hint(name, TRAINER_METRICS)}; it logs {', '.join(TRAINER_METRICS)}",
            )

    def trainer_parameter(self, path: Path_, name: str, param: Param) -> None:
        if name not in PARAMS:
            self.add(path, unknown_key_message(name))
            return
        if isinstance(param, Nested):
            self.add(path, f"the trainer takes flat parameters; '{name}' is a group")
            return
        target = PARAMS[name]
        if isinstance(param, Constant | Categorical):
            self.trainer_values(path, target, param)
            return
        if target.type in (str, bool):
            kinds = "|".join(target.choices) if target.choices else "true|false"
            self.add(path, f"'{name}' takes {kinds}: list them under values")
        elif target.type is int and not distributions.integer_valued(param):
            self.add(
                path,
                f"'{name}' takes integers and {param.distribution} draws floats: "
                "use int_uniform, values, or an integer q",
            )
        else:
            self.trainer_bounds(path, target, param)

    def trainer_values(self, path: Path_, target: Any, param: Constant | Categorical) -> None:
        if isinstance(param, Constant):
            items: list[tuple[Path_, Any]] = [((*path, "value"), param.value)]
        else:
            items = [((*path, "values", f"[{i}]"), v) for i, v in enumerate(param.values)]
        for item_path, value in items:
            try:
                coerce(target, value)
            except ConfigError as exc:
                self.add(item_path, str(exc).split(": ", 1)[-1])

    def trainer_bounds(self, path: Path_, target: Any, param: Param) -> None:
        low, high = distributions.support(param) or (-math.inf, math.inf)
        below = target.low is not None and low < target.low
        above = target.high is not None and high > target.high
        if below or above:
            allowed = f"[{_bound(target.low, '-inf')}, {_bound(target.high, 'inf')}]"
            self.add(
                path,
                f"{param.distribution} reaches [{low:g}, {high:g}] but "
                f"'{target.name}' takes {allowed}",
            )


def _bound(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"


def _param_path(leaf: tuple[str, ...]) -> Path_:
    # ("group", "x") sits at parameters.group.parameters.x in the file
    path: list[str] = []
    for index, name in enumerate(leaf):
        path += [name] if index == 0 else ["parameters", name]
    return tuple(path)


def _not_a_parameter(raw: Any) -> str:
    if isinstance(raw, list):
        return f"expected a mapping: write {{values: {_show(raw)}}}"
    if isinstance(raw, dict):
        return "empty parameter: give value, values, min and max, distribution or parameters"
    return (
        f"expected a mapping such as {{values: [...]}} or {{min: ..., max: ...}}: "
        f"write {{value: {_show(raw)}}} for a constant"
    )


def summary(spec: SweepSpec) -> str:
    """One line: method, metric, parameter count, grid size or continuous, hyperband brackets."""
    leaves_ = list(spec.leaves())
    searched = sum(not isinstance(p, Constant) for _, p in leaves_)
    metric = f"{spec.metric.name} ({spec.metric.goal})" if spec.metric else "no metric"
    if all(grid.is_discrete(p) for _, p in leaves_):
        space = f"{grid.shown(grid.size(spec.parameters))} points"
    else:
        space = "continuous"
    parts = [
        f"method {spec.method}",
        f"metric {metric}",
        f"{len(leaves_)} parameters ({searched} searched)",
        space,
    ]
    if spec.run_cap:
        parts.append(f"run_cap {spec.run_cap}")
    if spec.early_terminate:
        parts.append(_brackets_text(spec))
    if not spec.runs_project_trainer:
        parts.append(f"program {spec.program or ' '.join(spec.command or ())} (format checks only)")
    return ", ".join(parts)


def _brackets_text(spec: SweepSpec) -> str:
    assert spec.early_terminate is not None
    bands = spec.early_terminate.brackets()
    last = _most_epochs(spec)
    within = [b for b in bands if last is None or b <= last] or bands[:1]
    more = len(within) < len(bands) and last is None
    shown = ", ".join(str(b) for b in within[:6]) + (", ..." if more or len(within) > 6 else "")
    mode = "strict" if spec.early_terminate.strict else "best-so-far"
    return f"hyperband brackets at reports {shown} (eta {spec.early_terminate.eta:g}, {mode})"


def _most_epochs(spec: SweepSpec) -> int | None:
    """The trainer's largest `epochs` in this sweep: brackets past it never apply."""
    param = spec.parameters.get("epochs") if spec.runs_project_trainer else None
    if isinstance(param, Constant) and _is_integer(param.value):
        return int(param.value)
    if isinstance(param, Categorical) and all(_is_integer(v) for v in param.values):
        return int(max(param.values))
    bounds = distributions.support(param) if param is not None else None
    return int(bounds[1]) if bounds and math.isfinite(bounds[1]) else None
