"""W&B's sweep format as data, after its engine's `sweeps/config/schema.json`.

Each section of a sweep file is a table of its keys and what each takes; the parameter forms are
a table of their keys. `validate` walks these tables; the rules that relate one key to another
(min below max, metric with bayes, ...) are code there, as they are code in W&B's engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kmnist.sweep.text import expected_number, hint, is_integer, is_number, show


@dataclass(frozen=True)
class Kind:
    """A JSON-schema type with its constraint, and how a message names it."""

    expected: str  # "a whole number >= 1"
    test: Callable[[Any], bool]
    numeric: bool = False  # the message explains PyYAML's `1e-5`-is-a-string pitfall
    why: str = ""  # said when a number fails: what W&B would do with it

    def problem(self, value: Any) -> str | None:
        if self.test(value):
            return None
        if self.why and is_number(value):
            return f"expected {self.expected}, got {show(value)}: {self.why}"
        if self.numeric:
            return expected_number(value, self.expected)
        return f"expected {self.expected}, got {show(value)}"


@dataclass(frozen=True)
class Choice:
    """A JSON-schema enum; `listed` is how a message names the choices."""

    values: tuple[Any, ...]
    listed: str
    suggest: bool = False  # add "(did you mean ...?)" for a near miss

    def problem(self, value: Any) -> str | None:
        if value in self.values:
            return None
        near = hint(value, self.values) if self.suggest else ""
        return f"expected {self.listed}, got {show(value)}{near}"


Rule = Kind | Choice | None  # None: a sub-section or list with rules of its own


@dataclass(frozen=True)
class Section:
    """A mapping of the sweep file: its keys, and what an unknown key is called."""

    keys: Mapping[str, Rule]
    unknown: str


STRING = Kind("a string", lambda v: isinstance(v, str))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
NUMBER = Kind("a number", is_number, numeric=True)
RUN_CAP = Kind("a whole number > 0", lambda v: is_integer(v) and v > 0, numeric=True)
AT_LEAST_ONE = Kind("a whole number >= 1", lambda v: is_integer(v) and v >= 1, numeric=True)
# W&B's engine counts brackets with range(s): it raises on s: 2.0, which its schema lets through.
BRACKETS = Kind(
    "an integer >= 1",
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    numeric=True,
    why="W&B's engine raises on a float s: write it without a decimal point",
)
TARGET = Kind(
    "a finite number",
    lambda v: is_number(v) and math.isfinite(v),
    numeric=True,
    why="a sweep cannot stop on it",
)
ETA = Kind("a number > 1", lambda v: is_number(v) and v > 1, numeric=True)

# `method: custom` runs only on a W&B scheduler; the error text names the three that run anywhere.
METHODS = ("grid", "random", "bayes", "custom")
GOALS = ("minimize", "maximize")
IMPUTE = ("latest", "best", "worst")

TOP = Section(
    {
        "method": Choice(METHODS, "grid, random or bayes", suggest=True),
        "program": STRING,
        "name": STRING,
        "description": STRING,
        "project": STRING,
        "entity": STRING,
        "job": STRING,
        "image_uri": STRING,
        "apiVersion": STRING,
        "kind": Choice(("sweep",), "'sweep'"),
        "command": None,
        "run_cap": RUN_CAP,
        "controller": None,
        "metric": None,
        "metrics": None,
        "scheduler": None,
        "early_terminate": None,
        "parameters": None,
    },
    "unknown sweep key",
)
METRIC = Section(
    {
        "name": STRING,
        "goal": Choice(GOALS, "minimize or maximize", suggest=True),
        "target": TARGET,
        "impute": Choice(IMPUTE, "latest, best or worst"),
        "impute_while_running": Choice((*IMPUTE, "false"), "latest, best, worst or false"),
    },
    "unknown metric key",
)
HYPERBAND = Section(
    {
        "type": None,  # its message names the only choice: "expected type: hyperband"
        "min_iter": AT_LEAST_ONE,
        "max_iter": AT_LEAST_ONE,
        "s": BRACKETS,
        "eta": ETA,
        "strict": BOOLEAN,
    },
    "unknown hyperband key",
)
SCHEDULER = Section(
    {"engine": STRING, "source": STRING, "optimizer": STRING, "search_space": STRING},
    "unknown key",
)
CONTROLLER_TYPE = Choice(("local", "cloud"), "local or cloud")
ENGINE = Choice(("optuna", "ax", "wandb"), "optuna, ax or wandb")
ENGINE_METHODS = {"wandb": ("grid", "bayes", "random"), "optuna": ("custom",), "ax": ("custom",)}
# The forms W&B's Optuna scheduler turns into an Optuna distribution (`sweep_parameter_to_
# distribution`, wandb 0.31); any other, or a nested group, stops `wandb sweep-scheduler`.
OPTUNA_FORMS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "log_uniform_values",
    "q_uniform",
    "q_log_uniform_values",
)
# The forms W&B's Ax scheduler turns into an Ax parameter (`sweep_parameter_to_parameter`): the
# same table, q_log_uniform_values only with q 1.
AX_FORMS = OPTUNA_FORMS

# -- parameters ---------------------------------------------------------------------------------
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
BOUNDS = ("min", "max")
# Every law W&B knows, with the keys it takes besides `distribution` (schema.json's param_*).
FORMS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": BOUNDS,
    "uniform": BOUNDS,
    "q_uniform": (*BOUNDS, "q"),
    "log_uniform": BOUNDS,
    "log_uniform_values": BOUNDS,
    "q_log_uniform": (*BOUNDS, "q"),
    "q_log_uniform_values": (*BOUNDS, "q"),
    "inv_log_uniform": BOUNDS,
    "inv_log_uniform_values": BOUNDS,
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
DEFAULTS: dict[str, Any] = {"q": 1.0, "mu": 0.0, "sigma": 1.0, "a": 1.0, "b": 1.0}
CHOICE_FORMS = ("constant", "categorical", "categorical_w_probabilities")
# The keys that tell W&B a parameter's form when `distribution` is not named.
FORM_KEYS = ("value", "values", "min", "max", "distribution", "parameters")
# W&B's engine refuses these (min/max are base-e exponents) and names the replacement.
DEPRECATED = {
    "log_uniform": "log_uniform_values",
    "q_log_uniform": "q_log_uniform_values",
    "inv_log_uniform": "inv_log_uniform_values",
}
FINITE = Kind("a finite number", lambda v: is_number(v) and math.isfinite(v), numeric=True)
INTEGER_BOUND = Kind(
    "an integer (int_uniform)",
    lambda v: isinstance(v, int) and not isinstance(v, bool),
    numeric=True,
)


@dataclass(frozen=True)
class Least:
    """A lower limit on a law's number (schema.json's minimum / exclusiveMinimum)."""

    limit: float
    inclusive: bool
    message: str  # with {value}

    def problem(self, value: float) -> str | None:
        ok = value >= self.limit if self.inclusive else value > self.limit
        return None if ok else self.message.format(value=f"{value:g}")


BETA_SHAPE = Least(0, False, "a beta law needs a > 0 and b > 0, got {value}")
LIMITS = {
    "q": Least(0, False, "q is a step: expected a number > 0, got {value}"),
    "sigma": Least(0, True, "expected a number >= 0, got {value}"),
    "a": BETA_SHAPE,
    "b": BETA_SHAPE,
}

# -- command --------------------------------------------------------------------------------------
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
MACRO = re.compile(r"\$\{([^}]*)\}")
# `${envvar:NAME}`: the agent substitutes only these names (wandb_agent.py's regex).
ENVVAR_NAME = re.compile(r"[A-Z0-9_]*")
