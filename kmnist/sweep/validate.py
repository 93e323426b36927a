"""Check a sweep file against W&B's sweep format and, for the project's trainer, its parameters.

Every problem is collected, with its key path and line, so a user fixes a file in one pass.
The format rules are W&B's: the tables of `schema` (its schema.json) and, here, the rules that
relate keys to each other and what its engine refuses at run time. The trainer's rules
(`trainer_rules`) apply only when the sweep runs this project's trainer, so any valid W&B sweep
validates.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kmnist.sweep import grid, schema, trainer_rules
from kmnist.sweep.hyperband import brackets
from kmnist.sweep.schema import Section
from kmnist.sweep.source import Path_, Problem, Report, Source, read
from kmnist.sweep.spec import (
    Categorical,
    Param,
    SweepSpec,
    build,
    build_parameters,
    form_of,
    keys_of,
    leaves,
    parameter_path,
    required_keys,
    runs_project_trainer,
    scheduler_choices,
)
from kmnist.sweep.text import hint, is_number, show, yaml_text


def check_file(path: Path) -> tuple[SweepSpec | None, list[Problem]]:
    """The spec of a clean file, or None and every problem found."""
    return check_source(read(path))


def check_source(source: Source) -> tuple[SweepSpec | None, list[Problem]]:
    if source.problems and source.data is None:
        return None, source.problems
    report = Report(source)
    check(report, source.data)
    problems = source.problems + report.problems
    problems.sort(key=lambda p: p.line)
    return (None if problems else build(source.data)), problems


def check(report: Report, data: Any) -> None:
    if not isinstance(data, dict):
        shown = yaml_text(data) if not isinstance(data, str) else "text"
        report.add(
            (), f"expected a mapping of sweep keys (method, metric, parameters), got {shown}"
        )
        return
    unknown_keys(report, (), data, schema.TOP)
    if "method" not in data:
        report.add((), "missing 'method': expected grid, random or bayes")
    known_keys(report, (), data, schema.TOP)
    if "command" in data:
        command(report, data["command"])
    if "controller" in data:
        controller(report, data["controller"])
    objectives(report, data)
    if "scheduler" in data:
        scheduler(report, data)
    if "early_terminate" in data:
        early_terminate(report, data)
    parameters_section(report, data)


# -- the tables ---------------------------------------------------------------------------------
def unknown_keys(report: Report, path: Path_, data: dict[Any, Any], section: Section) -> None:
    for key in data:
        if key not in section.keys:
            report.add((*path, str(key)), f"{section.unknown}{hint(key, section.keys)}")


def known_keys(report: Report, path: Path_, data: dict[Any, Any], section: Section) -> None:
    for key, rule in section.keys.items():
        if rule is not None and key in data and (problem := rule.problem(data[key])):
            report.add((*path, key), problem)


# -- top level ----------------------------------------------------------------------------------
def command(report: Report, words: Any) -> None:
    if not isinstance(words, list):
        report.add(("command",), f"expected a list of words, got {show(words)}")
        return
    for index, word in enumerate(words):
        for name in schema.MACRO.findall(str(word)):
            macro(report, ("command", f"[{index}]"), name)


def macro(report: Report, path: Path_, name: str) -> None:
    if name.startswith("envvar:"):
        variable = name.removeprefix("envvar:")
        if not schema.ENVVAR_NAME.fullmatch(variable):
            report.add(
                path,
                f"W&B's agent substitutes ${{envvar:NAME}} only for names of capitals, digits "
                f"and _, so '${{{name}}}' would reach the program unsubstituted",
            )
    elif name not in schema.MACROS:
        near = hint(f"${{{name}}}", [f"${{{macro}}}" for macro in schema.MACROS])
        report.add(path, f"unknown macro '${{{name}}}'{near}: the agent would drop it")


def controller(report: Report, value: Any) -> None:
    if not isinstance(value, dict):
        report.add(("controller",), f"expected a mapping, got {show(value)}")
    elif problem := schema.CONTROLLER_TYPE.problem(value.get("type")):
        report.add(("controller", "type"), problem)


def objectives(report: Report, data: dict[Any, Any]) -> None:
    if "metric" in data:
        metric(report, ("metric",), data["metric"])
    if "metrics" in data:
        metrics(report, data)
    needs = "bayes search" if data.get("method") == "bayes" else None
    needs = needs or ("early_terminate" if "early_terminate" in data else None)
    if needs and "metric" not in data and "metrics" not in data:
        report.add((), f"{needs} needs a metric: add metric: {{name: ..., goal: ...}}")


def metric(report: Report, path: Path_, value: Any) -> None:
    if not isinstance(value, dict):
        report.add(path, f"expected a mapping with name and goal, got {show(value)}")
        return
    unknown_keys(report, path, value, schema.METRIC)
    if "name" not in value:
        report.add(path, "missing 'name': the metric the runs log, such as val/accuracy")
    known_keys(report, path, value, schema.METRIC)


def metrics(report: Report, data: dict[Any, Any]) -> None:
    listed = data["metrics"]
    if not isinstance(listed, list) or len(listed) < 2:
        report.add(("metrics",), "expected a list of at least two metrics")
        return
    for index, value in enumerate(listed):
        metric(report, ("metrics", f"[{index}]"), value)
    if "metric" in data:
        report.add(("metrics",), "metric and metrics cannot both be set")
    elif data.get("method") in ("grid", "random", "bayes"):
        report.add(
            ("metrics",), f"metrics (multi-objective) needs method: custom, got {data['method']}"
        )


def scheduler(report: Report, data: dict[Any, Any]) -> None:
    value = data["scheduler"]
    if not isinstance(value, dict):
        report.add(("scheduler",), f"expected a mapping, got {show(value)}")
        return
    unknown_keys(report, ("scheduler",), value, schema.SCHEDULER)
    known_keys(report, ("scheduler",), value, schema.SCHEDULER)
    engine = value.get("engine")
    if problem := schema.ENGINE.problem(engine):
        report.add(("scheduler", "engine"), problem)
    elif data.get("method") not in schema.ENGINE_METHODS[engine]:
        methods = " or ".join(schema.ENGINE_METHODS[engine])
        report.add(("method",), f"scheduler engine {engine} runs method {methods}")
    if any(k in value for k in ("optimizer", "search_space")) and "source" not in value:
        report.add(("scheduler",), "optimizer and search_space need source")
    if engine == "optuna" and "search_space" not in value:
        optuna_space(report, data.get("parameters"))
    if engine == "ax":
        ax_space(report, data.get("parameters"))
    if engine in ("optuna", "ax") and "metric" not in data and "metrics" not in data:
        report.add(
            (), f"a {engine} scheduler tells its study the runs' metric: add metric or metrics"
        )
    if "early_terminate" in data:
        report.add(("early_terminate",), "cannot be used with scheduler")
    control = data.get("controller")
    if isinstance(control, dict) and control.get("type") == "local":
        report.add(("controller",), "a local controller cannot be used with scheduler")


def optuna_space(report: Report, parameters: Any) -> None:
    """W&B's Optuna scheduler turns each parameter into one distribution, or fails to start."""
    for name, param in (parameters or {}).items() if isinstance(parameters, dict) else ():
        if not isinstance(param, dict):
            continue
        path = ("parameters", name)
        if "parameters" in param:
            report.add(path, "W&B's Optuna scheduler searches flat parameters, not a group")
        elif scheduler_choices(param):
            continue
        elif (form := form_of(param)) is not None and form not in schema.OPTUNA_FORMS:
            report.add(
                path,
                f"distribution {form} has no Optuna equivalent: W&B's Optuna scheduler takes "
                f"{', '.join(schema.OPTUNA_FORMS)}",
            )


def ax_space(report: Report, parameters: Any) -> None:
    """W&B's Ax scheduler turns each parameter into one Ax parameter, or fails to start."""
    for name, param in (parameters or {}).items() if isinstance(parameters, dict) else ():
        if not isinstance(param, dict):
            continue
        path, form = ("parameters", name), form_of(param)
        if "parameters" in param:
            report.add(path, "W&B's Ax scheduler searches flat parameters, not a group")
        elif scheduler_choices(param):
            _one_kind(report, path, param)
        elif form is not None and form not in schema.AX_FORMS:
            report.add(
                path,
                f"distribution {form} has no Ax equivalent: W&B's Ax scheduler takes "
                f"{', '.join(schema.AX_FORMS)}",
            )
        elif form == "q_log_uniform_values" and not _ax_log_int(param):
            report.add(
                path,
                "W&B's Ax scheduler takes q_log_uniform_values only as a log-scale range of "
                "whole numbers: q 1 (or none) and min at least 1",
            )


def _one_kind(report: Report, path: Path_, param: dict[Any, Any]) -> None:
    """Ax holds choices of one type (whole and decimal numbers together count as one)."""
    values = param["values"] if "values" in param else [param.get("value")]
    if not isinstance(values, list):
        return
    kinds = {_kind(v) for v in values}
    if len(kinds) > 1:
        report.add(
            path,
            f"values mix {' and '.join(sorted(kinds))}: W&B's Ax scheduler takes values of one "
            "type; choose one, or use the optuna or wandb engine",
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, (int, float)):
        return "numbers"
    return {str: "strings", type(None): "nulls"}.get(type(value), type(value).__name__)


def _ax_log_int(param: dict[Any, Any]) -> bool:
    q, low = param.get("q", 1), param.get("min")
    whole_q = isinstance(q, int) and not isinstance(q, bool) and q == 1
    return whole_q and isinstance(low, (int, float)) and not isinstance(low, bool) and low >= 1


# -- early_terminate ----------------------------------------------------------------------------
def early_terminate(report: Report, data: dict[Any, Any]) -> None:
    path: Path_ = ("early_terminate",)
    early = data["early_terminate"]
    if not isinstance(early, dict):
        report.add(
            path, f"expected a mapping such as {{type: hyperband, min_iter: 1}}, got {show(early)}"
        )
        return
    unknown_keys(report, path, early, schema.HYPERBAND)
    if early.get("type") != "hyperband":
        where = (*path, "type") if "type" in early else path
        report.add(where, f"expected type: hyperband, got {show(early.get('type'))}")
    before = len(report)
    known_keys(report, path, early, schema.HYPERBAND)
    if "max_iter" in early and "s" not in early:
        report.add(path, "max_iter needs s, the number of brackets below it")
    elif "min_iter" not in early and "max_iter" not in early:
        report.add(path, "hyperband needs min_iter, or max_iter and s")
    if len(report) == before and "type" in early:
        hyperband_brackets(report, path, early)


def hyperband_brackets(report: Report, path: Path_, early: dict[Any, Any]) -> None:
    eta = early.get("eta", 3)
    if not brackets(early.get("min_iter"), early.get("max_iter"), early.get("s"), eta):
        report.add(
            (*path, "max_iter"),
            f"no brackets: max_iter/eta = {early['max_iter'] / eta:g} < 1; "
            "raise max_iter or lower eta",
        )


# -- parameters ---------------------------------------------------------------------------------
def parameters_section(report: Report, data: dict[Any, Any]) -> None:
    if "parameters" not in data:
        plan = data.get("scheduler")
        if not (isinstance(plan, dict) and plan.get("search_space")):
            report.add((), "missing 'parameters': the search space, one entry per parameter")
        return
    clean = parameters(report, ("parameters",), data["parameters"])
    # The cross-checks below read the well-formed parameters; the others are reported.
    built = build_parameters({name: data["parameters"][name] for name in clean})
    if data.get("method") == "grid":
        discrete = all([grid_leaf(report, path, param) for path, param in leaves(built)])
        if discrete and len(clean) == len(data["parameters"]):
            grid_size(report, built)
    if runs_project_trainer(data):
        trainer_rules.check(report, data, built)


def parameters(report: Report, path: Path_, value: Any) -> list[Any]:
    """Check a parameters mapping; the names of its well-formed entries."""
    if not isinstance(value, dict) or not value:
        report.add(
            path,
            "expected a mapping of one or more parameters, such as "
            f"lr: {{min: 0.0001, max: 0.1}}, got {show(value)}",
        )
        return []
    clean = []
    for name, raw in value.items():
        before = len(report)
        if not isinstance(name, str) or not schema.PARAMETER_NAME.match(name):
            report.add(
                (*path, str(name)),
                "parameter names start with a letter or _ and hold only letters, digits, _ . -",
            )
        parameter(report, (*path, str(name)), raw)
        if len(report) == before:
            clean.append(name)
    return clean


def parameter(report: Report, path: Path_, raw: Any) -> None:
    if not isinstance(raw, dict) or not raw:
        report.add(path, _not_a_parameter(raw))
        return
    form = form_of(raw)
    if form is None:
        unknown_form(report, path, raw)
    elif form == "nested":
        for key in raw:
            if key != "parameters":
                report.add((*path, str(key)), "a group holds only 'parameters'")
        parameters(report, (*path, "parameters"), raw["parameters"])
    else:
        known_form(report, path, form, raw)


def _not_a_parameter(raw: Any) -> str:
    if isinstance(raw, list):
        return f"expected a mapping: write {{values: {show(raw)}}}"
    if isinstance(raw, dict):
        return "empty parameter: give value, values, min and max, distribution or parameters"
    return (
        f"expected a mapping such as {{values: [...]}} or {{min: ..., max: ...}}: "
        f"write {{value: {show(raw)}}} for a constant"
    )


def unknown_form(report: Report, path: Path_, raw: dict[Any, Any]) -> None:
    if "distribution" in raw:
        named = raw["distribution"]
        report.add(
            (*path, "distribution"),
            f"unknown distribution {show(named)}{hint(named, schema.FORMS)}",
        )
    elif "min" in raw or "max" in raw:
        missing = "max" if "min" in raw else "min"
        report.add(path, f"missing '{missing}': min and max go together")
    else:
        first = next(iter(raw))
        report.add(
            (*path, str(first)),
            "cannot tell the distribution: expected value, values, min and max, distribution "
            f"or parameters{hint(first, schema.FORM_KEYS)}",
        )


def known_form(report: Report, path: Path_, form: str, raw: dict[Any, Any]) -> None:
    allowed = (*keys_of(form), "distribution")
    for key in raw:
        if key not in allowed:
            report.add(
                (*path, str(key)),
                f"not a key of a {form} parameter, which takes "
                f"{', '.join(allowed)}{hint(key, allowed)}",
            )
    for key in required_keys(form):
        if key not in raw:
            report.add(path, f"{form} needs '{key}'")
    if form in schema.CHOICE_FORMS:
        choices(report, path, raw)
    else:
        numbers(report, path, form, raw)


def choices(report: Report, path: Path_, raw: dict[Any, Any]) -> None:
    values = raw.get("values", [None])
    if not isinstance(values, list) or not values:
        report.add((*path, "values"), f"expected a non-empty list, got {show(values)}")
    elif "probabilities" in raw:
        probabilities(report, (*path, "probabilities"), raw["probabilities"], len(values))


def probabilities(report: Report, path: Path_, given: Any, values: int) -> None:
    if not isinstance(given, list) or not all(is_number(p) and p >= 0 for p in given):
        report.add(path, "expected a list of numbers >= 0")
    elif len(given) != values:
        report.add(path, f"{len(given)} probabilities for {values} values: give one per value")
    elif not math.isclose(sum(given), 1.0, rel_tol=1e-5, abs_tol=1e-8):
        report.add(path, f"sum to {sum(given):g}, not 1")


def numbers(report: Report, path: Path_, form: str, raw: dict[Any, Any]) -> None:
    before = len(report)
    for key in keys_of(form):
        if key in raw:
            number(report, (*path, key), form, key, raw[key])
    takes_bounds = keys_of(form)[:2] == schema.BOUNDS
    if len(report) == before and takes_bounds and "min" in raw and "max" in raw:
        bounds(report, path, form, raw["min"], raw["max"])


def number(report: Report, path: Path_, form: str, key: str, value: Any) -> None:
    if form == "int_uniform" and key in schema.BOUNDS:
        problem = schema.INTEGER_BOUND.problem(value)
    else:
        problem = schema.FINITE.problem(value)
        if problem is None and key in schema.LIMITS:
            problem = schema.LIMITS[key].problem(value)
    if problem:
        report.add(path, problem)


def bounds(report: Report, path: Path_, form: str, low: float, high: float) -> None:
    if low >= high:
        report.add((*path, "min"), f"min {low:g} is not less than max {high:g}")
    elif form.endswith("_values") and low <= 0:
        report.add(
            (*path, "min"),
            f"{form} takes the logarithm of its bounds: min must be > 0, got {low:g}",
        )
    elif form in schema.DEPRECATED:
        report.add(
            (*path, "distribution"),
            f"{form} reads min/max as base-e exponents and W&B refuses it: use "
            f"{schema.DEPRECATED[form]} with min: {math.exp(low):.3g}, max: {math.exp(high):.3g}",
        )


# -- what W&B's grid search refuses ----------------------------------------------------------------
def grid_size(report: Report, built: dict[str, Param]) -> None:
    """Refuse a grid no engine can list (a bigger one without run_cap is only a warning)."""
    points = grid.size(built)
    if points > grid.MAX_POINTS:  # what an engine can list, whatever run_cap says
        report.add(
            ("parameters",),
            f"the grid has {grid.shown(points)} points, over the {grid.MAX_POINTS:,} "
            "an engine can list (grid search enumerates every point, with or without "
            "run_cap): narrow it, or use method: random",
        )


def grid_leaf(report: Report, leaf: tuple[str, ...], param: Param) -> bool:
    """True if W&B's grid search can enumerate `param`; else one problem says why."""
    path = ("parameters", *parameter_path(leaf))
    if isinstance(param, Categorical) and param.probabilities:
        report.add(
            (*path, "probabilities"),
            "grid search takes every value once: drop probabilities, or use method: random",
        )
        return False
    if not grid.is_discrete(param):
        report.add(
            path,
            f"grid search needs discrete parameters, and "
            f"{param.distribution} is not: use values, int_uniform or q_uniform",
        )
        return False
    return True
