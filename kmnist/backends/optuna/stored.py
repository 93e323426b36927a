"""A sweep as its storage holds it: the Optuna study, its ids, and the definition it was made with.

The study carries the sweep's definition (checked once, at create: `kmnist.sweep.definition`),
its id, creation time and state as user attributes, so an agent needs only the id. Each trial
carries its W&B-shaped config, its per-epoch history, its final summary and its objective (the
metric's best value over its history, as W&B's engine scores a run).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import optuna
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends import UnknownSweep
from kmnist.backends.optuna.storage import RETRY, answering, open_storage, storage_url
from kmnist.errors import UserError
from kmnist.masking import mask
from kmnist.sweep import SweepSpec, definition
from kmnist.sweep.command import command_config
from kmnist.sweep.definition import Definition
from kmnist.sweep.source import parse
from kmnist.sweep.validate import check_source

optuna.logging.set_verbosity(optuna.logging.WARNING)

DEFINITION = "definition"  # the user attribute holding `definition.dump(spec)`
SOURCE = "sweep_yaml"  # the file as the user wrote it, kept for people (optuna-dashboard)


@dataclass
class StoredSweep:
    sweep_id: str
    url: str
    storage: BaseStorage
    study: Study
    study_id: int
    definition: Definition

    @property
    def spec(self) -> SweepSpec:
        return self.definition.spec

    def trial_id(self, number: int) -> int:
        # Storage calls take ids; this public lookup turns a trial's number into one
        # (Trial._trial_id is private).
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def running(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def retry(self, number: int) -> None:
        """Queue a failed trial's config to run again, linked to it (Optuna's retry record)."""
        RETRY(self.study, self.storage.get_trial(self.trial_id(number)))

    @property
    def metric_name(self) -> str:
        """The (first) objective's name; "value" when the sweep names none."""
        return self.spec.objectives[0][0] if self.spec.objectives else "value"

    @property
    def state(self) -> str:
        return self.study.user_attrs.get("state", "running")


def load_sweep(sweep_id: str, url: str | None = None) -> StoredSweep:
    """The sweep `sweep_id` names in the storage at `url`; its definition is trusted as stored."""
    url = storage_url(url)
    storage = open_storage(url)
    try:
        with answering(url):
            study = optuna.load_study(study_name=sweep_id, storage=storage)
            study_id = storage.get_study_id_from_name(sweep_id)  # public: name -> id
            stored = definition_of(study)
    except KeyError:
        raise UnknownSweep(
            f"no sweep '{sweep_id}' in {mask(url)}; `kmnist-sweep ls` lists the sweeps there"
        ) from None
    return StoredSweep(sweep_id, url, storage, study, study_id, stored)


def definition_of(study: Study) -> Definition:
    stored = study.user_attrs.get(DEFINITION)
    if stored is None:
        spec = _checked_once_now(study)
        return Definition(spec, command_config(spec))
    try:
        return definition.load(stored)
    except definition.DefinitionError as exc:
        raise UserError(
            f"sweep {study.study_name} holds a definition this version cannot read: {exc}; "
            "create the sweep again from its file"
        ) from None


def _checked_once_now(study: Study) -> SweepSpec:
    """A study made before definitions were stored holds the YAML only: checked when opened."""
    spec, problems = check_source(parse(study.user_attrs.get(SOURCE, "")))
    if spec is None:
        first = problems[0].render(study.study_name) if problems else "no sweep definition"
        raise UserError(f"sweep {study.study_name} holds an invalid definition: {first}")
    return spec


def scored_value(trial: FrozenTrial) -> float | None:
    """What a trial scored: its objective (best over its history), else its (first) told value."""
    if "objective" in trial.user_attrs:
        return trial.user_attrs["objective"]
    return trial.values[0] if trial.values else None  # `value` raises on several objectives


class _HasUrl(Protocol):
    url: str


_S = TypeVar("_S", bound=_HasUrl)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def answers(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """The method, with a database that stops answering under it raised as StorageFault."""

    @functools.wraps(method)
    def call(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with answering(self.url):
            return method(self, *args, **kwargs)

    return call
