"""The user's own Optuna study in a scheduler sweep (`scheduler: {source, optimizer,
search_space}`), as W&B's Optuna scheduler loads it (`build_optuna_optimizer`), under this
project's rules for running code:

- it runs only where the user allows it, on that machine (`--allow-code` on `create` and on
  `agent`; off by default), from a local file whose SHA-256 matches what `create` stored;
- nothing stored in the sweep's storage is executed: the storage holds the path and the hash;
- everything that can be checked is checked before any trial starts, one line each: the file
  (missing, unreadable, changed), the names (not there, not a function), what they return (a
  search space that returns no dict, a factory that returns no Study, a terminator that cannot
  be called), and the study's directions against the sweep's goals (W&B's
  `validate_sweep_objective`).

`optimizer` names a function taking the sweep's facts (W&B's SweepInfo fields) and returning a
Study, or (Study, terminator); its sampler and pruner drive this sweep's stored study, and its
terminator, when given, ends the sweep. On the Ax engine it returns an `ax.Client` (or (Client,
terminator)), called afresh for each trial's proposal (`ax_sampler`): it must build the same
client each time. `search_space` names a define-by-run function of a
trial that returns the trial's parameters (e.g. knobs that exist for one model only).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from kmnist.backends.optuna import ax_logs
from kmnist.errors import UserError

CODE = "scheduler_code"  # the study's user attribute: {"source": path, "sha256": digest}
ALLOW = "--allow-code"


@dataclass(frozen=True)
class SweepFacts:
    """What W&B's scheduler passes an optimizer factory (its SweepInfo's fields)."""

    id: str
    name: str
    entity: str
    project: str
    config: dict[str, Any]
    controller_run_name: str


@dataclass(frozen=True)
class UserStudy:
    """What the user's file gives the sweep: a sampler and pruner, an optional terminator, an
    optional define-by-run search space."""

    sampler: BaseSampler | None = None
    pruner: BasePruner | None = None
    terminator: Callable[[optuna.Study], bool] | None = None
    search_space: Callable[[optuna.Trial], dict[str, Any]] | None = None


@dataclass(frozen=True)
class UserAxClient:
    """What the user's file gives an Ax sweep: a fresh configured `ax.Client` per call (the
    engine rebuilds one per trial, `ax_sampler`), and an optional terminator of a Client."""

    make: Callable[[], Any]
    terminator: Callable[[Any], bool] | None = None


def names_code(raw: Mapping[str, Any]) -> bool:
    """Whether the sweep runs the user's code: an Optuna study or space, an Ax client (the Ax
    engine ignores `search_space`, as W&B's does)."""
    scheduler = raw.get("scheduler")
    if not isinstance(scheduler, dict):
        return False
    keys = ("optimizer",) if scheduler.get("engine") == "ax" else ("optimizer", "search_space")
    return any(key in scheduler for key in keys)


def fingerprint(source: str) -> str:
    """The SHA-256 of the file `source` names; one line when it cannot be read."""
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(
            f"scheduler.source {source}: cannot read it ({exc.strerror or exc}): the file must "
            "lie on this machine, at this path from the folder the command runs in"
        ) from None


def load(
    raw: Mapping[str, Any], facts: SweepFacts, expected: str | None
) -> UserStudy | UserAxClient:
    """The user's study (or Ax client), loaded from `scheduler.source` and checked; `expected`:
    the digest `create` stored (None at create, where it is taken)."""
    scheduler = raw["scheduler"]
    source = scheduler["source"]
    if expected is not None and fingerprint(source) != expected:
        raise UserError(
            f"scheduler.source {source} changed since the sweep was created (its SHA-256 "
            "differs): restore the file, or create a new sweep from it"
        )
    if scheduler.get("engine") == "ax":
        ax_logs.quiet()  # before the user's file imports Ax
        with warnings.catch_warnings():  # Ax's notes on the client: W&B logs them, we drop them
            warnings.simplefilter("ignore")
            return _ax_client(_module(source), source, scheduler["optimizer"], facts)
    with warnings.catch_warnings():  # Optuna marks features the user chose experimental
        warnings.simplefilter("ignore", ExperimentalWarning)
        return _built(_module(source), source, scheduler, facts)


def _built(module: Any, source: str, scheduler: Mapping[str, Any], facts: SweepFacts) -> UserStudy:
    space = scheduler.get("search_space")
    built = (
        _study(module, source, scheduler["optimizer"], facts) if "optimizer" in scheduler else None
    )
    return UserStudy(
        sampler=built[0].sampler if built else None,
        pruner=built[0].pruner if built else None,
        terminator=built[1] if built else None,
        search_space=_search_space(module, source, space) if space else None,
    )


def _module(source: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        f"kmnist_sweep_source_{Path(source).stem}", source
    )
    if spec is None or spec.loader is None:
        raise UserError(f"scheduler.source {source}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is theirs, said in one line
        raise UserError(f"scheduler.source {source} failed to import: {_said(exc)}") from None
    return module


def _function(module: Any, source: str, name: str, what: str) -> Callable[..., Any]:
    found = getattr(module, name, None)
    if found is None:
        raise UserError(f"scheduler.{what}: {source} has no {name!r}")
    if not callable(found):
        raise UserError(
            f"scheduler.{what}: {name!r} in {source} is {type(found).__name__}, not a function"
        )
    return found


def _search_space(module: Any, source: str, name: str) -> Callable[[optuna.Trial], dict]:
    """A define-by-run function of one trial returning a dict, tried on a throwaway study."""
    constructor = _function(module, source, name, "search_space")
    _takes_one(constructor, source, name, "search_space", "an optuna.Trial")
    trial = optuna.create_study().ask()
    try:
        params = constructor(trial)
    except Exception as exc:
        raise UserError(f"scheduler.search_space: {name}(trial) failed: {_said(exc)}") from None
    if not isinstance(params, Mapping):
        raise UserError(
            f"scheduler.search_space: {name!r} in {source} returned {type(params).__name__}, "
            "not a dict of parameter values"
        )
    return constructor


def _study(
    module: Any, source: str, name: str, facts: SweepFacts
) -> tuple[optuna.Study, Callable[[optuna.Study], bool] | None]:
    factory = _function(module, source, name, "optimizer")
    _takes_one(factory, source, name, "optimizer", "the sweep's SweepInfo")
    study, terminator = _made(factory, source, name, facts, optuna.Study, "an optuna.Study")
    _same_objectives(study, facts.config)
    return study, terminator


def _ax_client(module: Any, source: str, name: str, facts: SweepFacts) -> UserAxClient:
    """The user's Ax client factory (W&B's `build_ax_optimizer`), called once here to check
    what it returns and its objectives against the sweep's (W&B's `validate_sweep_objective`)."""
    from ax.api.client import Client

    factory = _function(module, source, name, "optimizer")
    _takes_one(factory, source, name, "optimizer", "the sweep's SweepInfo")
    client, terminator = _made(factory, source, name, facts, Client, "an ax.Client")
    _same_ax_objectives(client, facts.config)
    _same_ax_parameters(client, facts.config)
    again = functools.partial(_made, factory, source, name, facts, Client, "an ax.Client")
    return UserAxClient(lambda: again()[0], terminator)


def _made(
    factory: Callable[[SweepFacts], Any],
    source: str,
    name: str,
    facts: SweepFacts,
    kind: type,
    shown: str,
) -> tuple[Any, Callable[[Any], bool] | None]:
    """What `factory(sweep)` returns, as W&B's `load_optimizer_config` takes it: an optimizer of
    `kind`, or (optimizer, terminator)."""
    try:
        made = factory(facts)
    except Exception as exc:
        raise UserError(f"scheduler.optimizer: {name}(sweep) failed: {_said(exc)}") from None
    optimizer, terminator = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(optimizer, kind):
        raise UserError(
            f"scheduler.optimizer: {name!r} in {source} returned {type(made).__name__}: "
            f"expected {shown}, or a tuple of it and a terminator"
        )
    if terminator is not None and not callable(terminator):
        raise UserError(f"scheduler.optimizer: the terminator {name!r} returned cannot be called")
    return optimizer, terminator


def _takes_one(fn: Callable[..., Any], source: str, name: str, what: str, arg: str) -> None:
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise UserError(
            f"scheduler.{what}: {name!r} in {source} must take one argument, {arg}"
        ) from None
    except ValueError:  # a builtin without a signature: let the call tell
        return


def _same_objectives(study: optuna.Study, config: Mapping[str, Any]) -> None:
    """W&B's rule: the study's directions are the sweep's goals, in the sweep's order."""
    listed = config.get("metrics") or [config.get("metric") or {}]
    goals = [str(m.get("goal", "minimize")).lower() for m in listed]
    directions = [d.name.lower() for d in study.directions]
    if directions != goals:
        raise UserError(
            f"scheduler.optimizer: the study's directions {directions} do not match the "
            f"sweep's goals {goals}: create the study with directions={goals}"
        )
    names = getattr(study, "metric_names", None)
    wanted = [m.get("name") for m in listed]
    if names and list(names) != wanted:
        raise UserError(
            f"scheduler.optimizer: the study's metric names {list(names)} do not match the "
            f"sweep's {wanted}"
        )


def _same_ax_objectives(client: Any, config: Mapping[str, Any]) -> None:
    """W&B's rule for an Ax client: one objective per sweep metric, in order, each with the
    sweep's goal and name."""
    listed = config.get("metrics") or [config.get("metric") or {}]
    wanted = [(m.get("name"), str(m.get("goal", "minimize")).lower()) for m in listed]
    experiment = _experiment_of(client)
    objective = getattr(getattr(experiment, "optimization_config", None), "objective", None)
    if objective is None or getattr(objective, "is_scalarized_objective", False):
        raise UserError(
            "scheduler.optimizer: the Ax client has no objective per metric: call "
            f"configure_experiment and configure_optimization with {[n for n, _ in wanted]}"
        )
    found = [(n, "minimize" if w < 0 else "maximize") for n, w in objective.metric_weights]
    if found != wanted:
        raise UserError(
            f"scheduler.optimizer: the Ax client optimizes {found}, the sweep {wanted}: "
            "configure the client's objectives as the sweep's metrics and goals"
        )


def _same_ax_parameters(client: Any, config: Mapping[str, Any]) -> None:
    """The client searches the file's parameters: each trial is stored with the file's."""
    space = getattr(getattr(_experiment_of(client), "search_space", None), "parameters", {})
    if sorted(space) != sorted(config.get("parameters") or {}):
        raise UserError(
            f"scheduler.optimizer: the Ax client searches {sorted(space)}, the sweep file "
            f"{sorted(config.get('parameters') or {})}: give the client the file's parameters"
        )


def _experiment_of(client: Any) -> Any:
    """The client's experiment, None before configure_experiment. Why private: Ax keeps it so,
    and W&B's scheduler reads it the same way (its `_experiment` raises when unset)."""
    return getattr(client, "_maybe_experiment", None)


def _said(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
