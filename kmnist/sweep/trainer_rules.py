"""The trainer's rules for a sweep that runs it: its parameters, its metrics, its command line.

The names and domains come from the trainer itself (`kmnist.trainer.params`, `.metrics`), never
from a copy; these rules apply only when the sweep runs this project's trainer. A nested group's
parameters reach the trainer under their own names, as its W&B entry point takes them.
"""

from __future__ import annotations

import math
from typing import Any

from kmnist.sweep import distributions, grid
from kmnist.sweep.command import entry_words, literal_parameters
from kmnist.sweep.source import Path_, Report
from kmnist.sweep.spec import Categorical, Constant, Nested, Param, leaves, parameter_path
from kmnist.sweep.text import hint
from kmnist.trainer import metrics, params
from kmnist.trainer.params import PARAMS, ConfigError, coerce, unknown_key_message
from kmnist.trainer.params import Param as Knob

# The `${args...}` macros whose words the trainer's entry point reads as its parameters (with
# args_no_boolean_flags a false flag is left out, and W&B's parameter file gives it).
ARGS_MACROS = ("${args}", "${args_no_equals}", "${args_no_boolean_flags}")
UNREADABLE = {
    "${args_no_hyphens}": "name=value words",
    "${args_json}": "one JSON word",
    "${args_json_file}": "a file name",
    "${args_append_hydra}": "+name=value words",
    "${args_override_hydra}": "++name=value words",
}


def check(report: Report, data: dict[Any, Any], parameters: dict[str, Param]) -> None:
    literal: dict[str, str] = {}
    if isinstance(data.get("command"), list):
        literal = check_command(report, data["command"])
        check_group_words(report, data["command"], parameters)
    metric = data.get("metric")
    if isinstance(metric, dict) and isinstance(metric.get("name"), str):
        check_metric(report, ("metric", "name"), metric["name"])
    listed = data.get("metrics")
    for index, entry in enumerate(listed if isinstance(listed, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            check_metric(report, ("metrics", f"[{index}]", "name"), entry["name"])
    check_groups(report, parameters)
    inside: dict[str, bool] = dict.fromkeys(literal, False)  # name -> seen inside a group
    for leaf, param in leaves(parameters):
        path = ("parameters", *parameter_path(leaf))
        name, grouped = leaf[-1], len(leaf) > 1
        if name in inside and (grouped or inside[name]):
            report.add(
                path,
                f"'{name}' is given twice, once inside a group: the trainer takes a group's "
                "parameters under their own names",
            )
        inside[name] = inside.get(name, False) or grouped
        check_parameter(report, path, name, param)
    check_read(report, parameters)
    check_mixing(report, parameters)


def check_command(report: Report, words: list[Any]) -> dict[str, str]:
    """Problems of the trainer's command; the trainer parameters written into it."""
    texts = [str(word) for word in words]
    for index, word in enumerate(texts):
        if word in UNREADABLE:
            report.add(
                ("command", f"[{index}]"),
                f"{word} hands the trainer {UNREADABLE[word]}, and it reads --name=value: "
                "use ${args}",
            )
    if not set(ARGS_MACROS) & set(texts) and not set(UNREADABLE) & set(texts):
        report.add(
            ("command",), "the trainer reads its parameters as --name=value: add ${args} to command"
        )
    literal, others = literal_parameters(entry_words(texts).arguments)  # ${envvar:...} as written
    for word in others:
        if not word.startswith("--"):  # the train command takes no positional words
            report.add(
                ("command", f"[{texts.index(word)}]"),
                f"{word!r} reaches the trainer as a word it cannot read: write --name=value",
            )
    for name, value in literal.items():
        if "${envvar:" in value:  # the agent's environment gives it, at run time
            continue
        try:
            coerce(PARAMS[name], value)
        except ConfigError as exc:
            report.add(_word_path(texts, name), str(exc))
    return literal


def _word_path(words: list[str], name: str) -> Path_:
    """The path of the last command word that names trainer parameter `name`."""
    named = [i for i, w in enumerate(words) if w[2:].split("=")[0].replace("-", "_") == name]
    return ("command", f"[{named[-1]}]") if named else ("command",)


def check_group_words(report: Report, words: list[Any], parameters: dict[str, Param]) -> None:
    """${args_no_equals} writes a group as `--name {...}`: the entry point reads no group there."""
    texts = [str(word) for word in words]
    if "${args_no_equals}" in texts and any(isinstance(p, Nested) for p in parameters.values()):
        report.add(
            ("command", f"[{texts.index('${args_no_equals}')}]"),
            "${args_no_equals} hands a group to the trainer as two words it cannot read: "
            "use ${args}",
        )


def check_groups(report: Report, parameters: dict[str, Param], prefix: Path_ = ()) -> None:
    """A group named like a trainer parameter would reach the trainer as that parameter; one
    named with a leading `_` would not reach it at all."""
    for name, param in parameters.items():
        if not isinstance(param, Nested):
            continue
        path = ("parameters", *parameter_path((*prefix, name)))
        if name in PARAMS:
            report.add(
                path,
                f"the trainer takes '{name}' as a value, and here it is a group: "
                "name the group otherwise",
            )
        elif str(name).startswith("_"):  # W&B's own keys (`_wandb`, ...): the trainer drops them
            report.add(
                path,
                f"the trainer leaves out names that start with '_', so group '{name}' and every "
                "parameter in it would be ignored: name the group without the '_'",
            )
        check_groups(report, param.parameters, (*prefix, name))


def check_metric(report: Report, path: Path_, name: str) -> None:
    """An objective must be one the trainer logs, and never a test-set score."""
    if name in metrics.TEST:
        report.add(
            path, f"{name} scores the test set, which a sweep must never tune on: use val/accuracy"
        )
    elif name not in metrics.OBJECTIVES:
        report.add(
            path,
            f"the trainer does not log {name!r}{hint(name, metrics.OBJECTIVES)}; "
            f"it logs {', '.join(metrics.OBJECTIVES)}",
        )


def check_parameter(report: Report, path: Path_, name: str, param: Param) -> None:
    if name not in PARAMS:
        report.add(path, unknown_key_message(name))
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
        if value is None:  # null: the trainer's default (W&B's agent passes it as None)
            continue
        try:
            coerce(knob, value)
        except ConfigError as exc:
            report.add(item_path, str(exc).split(": ", 1)[-1])


def check_bounds(report: Report, path: Path_, knob: Knob, param: Param) -> None:
    low, high = distributions.support(param) or (-math.inf, math.inf)
    # A range must lie in [knob.low, knob.high]; the knob's off value is a single point.
    fits = knob.allowed(low) if low == high else knob.in_range(low) and knob.in_range(high)
    if not fits:
        report.add(
            path,
            f"{param.distribution} reaches [{low:g}, {high:g}] but '{knob.name}' takes "
            f"{knob.range_text().removeprefix(' in ')}",
        )


def check_read(report: Report, parameters: dict[str, Param]) -> None:
    """A parameter that none of the sweep's models reads would be searched (or set) for nothing:
    the trainer ignores another model's knobs, so a sweep over several models can share a file."""
    models = _models(parameters)
    if not models:
        return
    for leaf, _ in leaves(parameters):
        knob = PARAMS.get(leaf[-1])
        if knob is not None and not set(models) & set(knob.models):
            report.add(
                ("parameters", *parameter_path(leaf)),
                f"'{knob.name}' is read by {', '.join(knob.models)} only, and this sweep's model "
                f"is {' or '.join(models)}: it would be ignored; remove it, or add such a model",
            )


def _models(parameters: dict[str, Param]) -> list[str]:
    """The models the sweep can draw (the trainer's default when unset); [] if unreadable."""
    found = [param for leaf, param in leaves(parameters) if leaf[-1] == "model"]
    if not found:
        return [PARAMS["model"].default]
    if len(found) > 1 or not isinstance(found[0], Constant | Categorical):
        return []  # given twice or not a list of names: reported elsewhere
    return [v for v in grid.values(found[0]) if v in PARAMS["model"].choices]


MIXING = ("mixup_alpha", "cutmix_alpha", "mixup_prob", "cutmix_prob")


def check_mixing(report: Report, parameters: dict[str, Param]) -> None:
    """The trainer's rule for mixup with cutmix, applied to the largest values the sweep can
    draw: a sweep that can draw a trial the trainer refuses would lose that trial."""
    found = {leaf[-1]: (leaf, param) for leaf, param in leaves(parameters) if leaf[-1] in MIXING}
    largest = {name: _largest(found[name][1], PARAMS[name]) if name in found else
               PARAMS[name].default for name in MIXING}  # fmt: skip
    if None in largest.values():
        return  # a value that is not a number: reported elsewhere
    try:
        params.check_mixing(largest)
    except ConfigError as exc:
        named = [found[n][0] for n in ("cutmix_prob", "mixup_prob") if n in found]
        path = ("parameters", *parameter_path(named[0])) if named else ("parameters",)
        unset = [f"{n} unset: {PARAMS[n].default:g}" for n in MIXING[2:] if n not in found]
        defaults = f" ({', '.join(unset)})" if unset else ""
        report.add(path, f"the trainer refuses trials this sweep can draw{defaults}: {exc}")


def _largest(param: Param, knob: Knob) -> float | None:
    """The largest number `param` can hand the trainer (null: the knob's default); None if
    it is not a number (a problem reported elsewhere)."""
    if isinstance(param, Constant | Categorical):
        values = [knob.default if v is None else v for v in grid.values(param)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return max(numbers) if len(numbers) == len(values) else None
    bounds = distributions.support(param)
    return bounds[1] if bounds else None
