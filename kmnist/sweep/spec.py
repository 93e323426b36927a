"""The W&B sweep configuration as typed data: every parameter form, W&B's defaults, nesting kept.

`build` turns a mapping that `validate.check` passed into a `SweepSpec`; it trusts its input.
Parameter forms are W&B's (`schema.FORMS`): the distribution is named, or inferred as W&B
infers it (`value` → constant, `values` → categorical, int `min`/`max` → int_uniform, any float
bound → uniform, `parameters` → a nested group).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kmnist.sweep import hyperband
from kmnist.sweep.schema import DEFAULTS, FORMS

BOUNDED = tuple(name for name, keys in FORMS.items() if keys[:2] == ("min", "max"))
NORMALS = tuple(name for name, keys in FORMS.items() if keys[:2] == ("mu", "sigma"))
BETAS = tuple(name for name, keys in FORMS.items() if keys[:2] == ("a", "b"))
DISTRIBUTIONS = tuple(FORMS)


def keys_of(distribution: str) -> tuple[str, ...]:
    """The keys a parameter of this distribution may hold, besides `distribution`."""
    return FORMS[distribution]


def required_keys(distribution: str) -> tuple[str, ...]:
    return tuple(k for k in keys_of(distribution) if k not in DEFAULTS)


def form_of(raw: Mapping[str, Any]) -> str | None:
    """The distribution W&B would read `raw` as ("nested" for a group), or None if it can't tell."""
    if "distribution" in raw:
        named = raw["distribution"]
        return named if named in DISTRIBUTIONS else None
    if "parameters" in raw:
        return "nested"
    if "value" in raw:
        return "constant"
    if "values" in raw:
        return "categorical_w_probabilities" if "probabilities" in raw else "categorical"
    if "min" in raw and "max" in raw:
        ints = all(is_int(raw[k]) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None


def scheduler_choices(raw: Mapping[str, Any]) -> bool:
    """Whether W&B's Optuna and Ax schedulers read `raw` as a list of choices: a `value`, a
    `values` with no `distribution` (probabilities and all), or a categorical or constant."""
    named = raw.get("distribution")
    return (
        "value" in raw
        or ("values" in raw and named is None)
        or named in ("categorical", "constant")
    )


def is_int(value: Any) -> bool:
    """A whole number written as one (5, not 5.0 or True)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Constant:
    value: Any
    distribution: str = "constant"


@dataclass(frozen=True)
class Categorical:
    values: tuple[Any, ...]
    probabilities: tuple[float, ...] | None = None

    @property
    def distribution(self) -> str:
        return "categorical_w_probabilities" if self.probabilities else "categorical"


@dataclass(frozen=True)
class Bounded:
    """int_uniform, uniform and the log/inv-log/quantized forms: a law on [min, max]."""

    distribution: str
    min: float
    max: float
    q: float | None = None


@dataclass(frozen=True)
class Normal:
    """normal, q_normal, log_normal, q_log_normal."""

    distribution: str
    mu: float = 0.0
    sigma: float = 1.0
    q: float | None = None


@dataclass(frozen=True)
class Beta:
    distribution: str
    a: float = 1.0
    b: float = 1.0
    q: float | None = None


@dataclass(frozen=True)
class Nested:
    """A group: its parameters reach the trial as one nested mapping under the group's name."""

    parameters: dict[str, Param]
    distribution: str = "nested"


Param = Constant | Categorical | Bounded | Normal | Beta | Nested


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"  # W&B's default
    target: float | None = None
    impute: str = "worst"
    impute_while_running: str = "false"


@dataclass(frozen=True)
class Hyperband:
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3
    strict: bool = True  # W&B's default

    def brackets(self) -> list[int]:
        return hyperband.brackets(self.min_iter, self.max_iter, self.s, self.eta)


# What the project's own trainer is called in a sweep file: W&B runs `python -m kmnist.wandb_entry`.
PROJECT_PROGRAM = "kmnist/wandb_entry.py"
PROJECT_MODULE = "kmnist.wandb_entry"


@dataclass(frozen=True)
class SweepSpec:
    method: str
    parameters: dict[str, Param]
    metric: Metric | None = None
    early_terminate: Hyperband | None = None
    run_cap: int | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None
    description: str | None = None
    project: str | None = None
    entity: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def goal(self) -> str:
        """The goal of the (first) objective; W&B's default, minimize, when there is none."""
        found = self.objectives
        return found[0][1] if found else "minimize"

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(name, goal) of each objective: `metrics` in the file's order, else `metric`."""
        listed = self.raw.get("metrics")
        if isinstance(listed, list):
            return [(m["name"], m.get("goal", "minimize")) for m in listed]
        return [(self.metric.name, self.metric.goal)] if self.metric else []

    @property
    def runs_project_trainer(self) -> bool:
        return runs_project_trainer(self.raw)

    @property
    def scheduler_engine(self) -> str | None:
        """The engine a scheduler sweep names (optuna, ax, wandb), or None for a plain sweep."""
        scheduler = self.raw.get("scheduler")
        return scheduler.get("engine") if isinstance(scheduler, dict) else None

    @property
    def search(self) -> str:
        """How the sweep searches: its scheduler's engine, else its method."""
        return self.scheduler_engine or self.method

    def leaves(self) -> Iterator[tuple[tuple[str, ...], Param]]:
        """Every non-group parameter with its path, nested groups walked in file order."""
        yield from leaves(self.parameters)


def leaves(
    parameters: Mapping[str, Param], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Param]]:
    for name, param in parameters.items():
        if isinstance(param, Nested):
            yield from leaves(param.parameters, (*prefix, name))
        else:
            yield (*prefix, name), param


def parameter_path(leaf: tuple[str, ...]) -> tuple[str, ...]:
    """("group", "x") sits at parameters.group.parameters.x in the file."""
    path: list[str] = []
    for index, name in enumerate(leaf):
        path += [name] if index == 0 else ["parameters", name]
    return tuple(path)


def runs_project_trainer(raw: Mapping[str, Any]) -> bool:
    """True when W&B's agent would run this project's trainer: no program, or ours."""
    program = raw.get("program")
    command = raw.get("command")
    if program is not None and not _is_project_program(program):
        return False
    if command is None:
        return True
    words = [str(word) for word in command] if isinstance(command, list) else []
    return PROJECT_MODULE in words or ("${program}" in words and program is not None)


def _is_project_program(program: Any) -> bool:
    return isinstance(program, str) and PurePosixPath(program.lstrip("./")) == PurePosixPath(
        PROJECT_PROGRAM
    )


def build(raw: Mapping[str, Any]) -> SweepSpec:
    """A `SweepSpec` from a mapping that validated clean (W&B's defaults filled in)."""
    metric = raw.get("metric")
    early = raw.get("early_terminate")
    command = raw.get("command")
    return SweepSpec(
        method=raw["method"],
        parameters=build_parameters(raw.get("parameters") or {}),
        metric=Metric(**metric) if metric else None,
        early_terminate=Hyperband(**{k: v for k, v in early.items() if k != "type"})
        if early
        else None,
        run_cap=raw.get("run_cap"),
        program=raw.get("program"),
        command=tuple(str(word) for word in command) if command is not None else None,
        name=raw.get("name"),
        description=raw.get("description"),
        project=raw.get("project"),
        entity=raw.get("entity"),
        raw=dict(raw),
    )


def build_parameters(raw: Mapping[str, Any]) -> dict[str, Param]:
    return {name: build_param(value) for name, value in raw.items()}


def build_param(raw: Mapping[str, Any]) -> Param:
    form = form_of(raw)
    if form == "nested":
        return Nested(build_parameters(raw["parameters"]))
    if form == "constant":
        return Constant(raw["value"])
    if form in ("categorical", "categorical_w_probabilities"):
        probabilities = raw.get("probabilities")
        return Categorical(tuple(raw["values"]), tuple(probabilities) if probabilities else None)
    assert form is not None, "build_param needs a validated parameter"
    given = {k: raw.get(k, DEFAULTS.get(k)) for k in keys_of(form)}
    if form in BOUNDED:
        return Bounded(form, **given)
    if form in NORMALS:
        return Normal(form, **given)
    return Beta(form, **given)
