"""The offline engine: a sweep as an Optuna study, in a journal file or a database.

The study carries the sweep's YAML, id, creation time and state as user attributes, so an
agent needs only the id. Each trial carries its W&B-shaped config, its per-epoch history, its
final summary and its objective (the metric's best value over its history, as W&B's engine
scores a run), so the leaderboard reads everything from storage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryFailedTrialCallback
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends import (
    Plot,
    SweepDone,
    SweepDraining,
    SweepInfo,
    SweepPaused,
    Ticket,
    TrialLost,
    TrialRecord,
    UnknownSweep,
)
from kmnist.backends.optuna import heartbeats
from kmnist.backends.optuna.bridge import StudyPlan, plan, suggest_config
from kmnist.backends.optuna.samplers import WandbGridSampler, retried, retry_of
from kmnist.backends.optuna.storage import (
    GRACE_SECONDS,
    RETRY,
    answering,
    journal_path,
    open_storage,
    storage_url,
)
from kmnist.backends.optuna.trial_locks import TrialLocks
from kmnist.errors import StorageFault, UserError
from kmnist.masking import mask
from kmnist.sweep import SweepSpec, objective
from kmnist.sweep.command import entry_words, literal_parameters
from kmnist.sweep.engines import offline_refusals
from kmnist.sweep.source import parse
from kmnist.sweep.validate import check_source

optuna.logging.set_verbosity(optuna.logging.WARNING)
# ask/tell with an RDB heartbeat warns that heartbeats belong to optimize(); we beat ourselves.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

STATES = ("running", "paused", "stopped")
_RECORD_STATE = {
    TrialState.RUNNING: "running",
    TrialState.COMPLETE: "completed",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "waiting",
}


def create_sweep(
    spec_text: str,
    spec: SweepSpec,
    name: str | None = None,
    url: str | None = None,
    bayes_startup: int | None = None,
) -> str:
    """Register the sweep as a new study; returns its id.

    A sweep W&B runs but this engine cannot (see `engines.offline_refusals`) is refused here.
    `bayes_startup`, kept with the study, is how many random trials bayes draws before its
    model takes over (None: W&B's start, `objective.WANDB_STARTUP`).
    """
    _refuse_what_only_wandb_runs(spec)
    if bayes_startup is not None and bayes_startup < 1:
        raise UserError(f"bayes startup trials: expected a whole number >= 1, got {bayes_startup}")
    base = name or spec.name or "sweep"
    sweep_id = f"{_slug(base)}-{secrets.token_hex(3)}"
    storage = open_storage(url)
    with answering(storage_url(url)):
        study = optuna.create_study(
            storage=storage, study_name=sweep_id, direction=spec.goal, load_if_exists=False
        )
        study.set_user_attr("sweep_yaml", spec_text)
        study.set_user_attr("sweep_id", sweep_id)
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        study.set_user_attr("created", created)
        study.set_user_attr("state", "running")
        if bayes_startup is not None:
            study.set_user_attr("bayes_startup", bayes_startup)
    return sweep_id


def _refuse_what_only_wandb_runs(spec: SweepSpec) -> None:
    refusals = offline_refusals(spec)
    if refusals:
        raise UserError(
            f"the offline engine cannot run this sweep as W&B would: {refusals[0]}; "
            "create it on W&B (--backend wandb)"
        )


@dataclass
class SweepListing:
    """One sweep of a storage, as `kmnist-sweep ls` lists it."""

    sweep_id: str
    created: str
    state: str
    trials: int
    best: float | None


def list_sweeps(url: str | None = None) -> list[SweepListing]:
    storage = open_storage(url)
    with answering(storage_url(url)):
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    return [
        SweepListing(
            s.study_name,
            s.user_attrs.get("created", ""),
            s.user_attrs.get("state", ""),
            s.n_trials,
            s.best_trial.value if s.best_trial else None,
        )
        for s in summaries
    ]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _answering(
    method: Callable[Concatenate[OptunaSweep, _P], _R],
) -> Callable[Concatenate[OptunaSweep, _P], _R]:
    """The method, with a database that stops answering under it raised as StorageFault."""

    @functools.wraps(method)
    def call(self: OptunaSweep, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with answering(self.url):
            return method(self, *args, **kwargs)

    return call


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(filter(None, slug.split("-")))[:40] or "sweep"


class OptunaSweep:
    """One sweep as agents and the leaderboard see it."""

    def __init__(self, sweep_id: str, url: str | None = None, seed: int | None = None) -> None:
        self.sweep_id = sweep_id
        self.url = storage_url(url)
        self.storage: BaseStorage = open_storage(self.url)
        try:
            with answering(self.url):
                self.study = optuna.load_study(study_name=sweep_id, storage=self.storage)
                # Storage calls take ids; these public lookups turn the study's name and a
                # trial's number into them (Study._study_id and Trial._trial_id are private).
                self.study_id = self.storage.get_study_id_from_name(sweep_id)
        except KeyError:
            raise UnknownSweep(
                f"no sweep '{sweep_id}' in {_shown(self.url)}; "
                "`kmnist-sweep ls` lists the sweeps there"
            ) from None
        self.spec = _spec_of(self.study)
        startup = self.study.user_attrs.get("bayes_startup")
        self.plan: StudyPlan = plan(self.spec, seed, startup=startup)
        self.study.sampler, self.study.pruner = self.plan.sampler, self.plan.pruner
        folder = journal_path(self.url)
        self.locks = TrialLocks(Path(f"{folder}.locks") / sweep_id) if folder else None
        self.lock_grace: float = GRACE_SECONDS  # running this long with no lock: owner gone
        self._heartbeats: dict[int, threading.Event] = {}
        # Trial number -> the storage fault that cut it short (a full disk, the database gone)
        self._faults: dict[int, StorageFault] = {}
        self._unbeaten: dict[int, float] = {}  # trial number -> when first seen running, unbeaten
        if isinstance(self.storage, RDBStorage):
            heartbeats.apply_window(self.storage)

    # -- handing out trials ------------------------------------------------------------------
    @_answering
    def next_trial(self) -> Ticket:
        refusals = offline_refusals(self.spec)  # studies made before `create` refused these
        if refusals:
            raise UserError(
                f"sweep {self.sweep_id}: the offline engine cannot run it: {refusals[0]}"
            )
        self.reap_dead_trials()
        self._check_open()
        if self.locks:
            self.locks.check_writable()  # before a trial exists that could not be locked
        trial = self.study.ask()
        try:
            with answering(self.url):
                return self._hand_out(trial)
        except StorageFault:
            self._let_go(trial.number, told=False)  # left to crash detection, as in `finish`
            raise

    def _hand_out(self, trial: optuna.Trial) -> Ticket:
        # Claimed at once: until its lock or first heartbeat exists, a trial whose agent dies
        # is invisible to a heartbeat reaper and waits out the grace period for a lock reaper.
        if self.locks:
            self.locks.hold(trial.number)
        self._start_heartbeat(trial)
        frozen = self.storage.get_trial(self._trial_id(trial.number))
        if self._over_cap(trial.number):
            self._discard(trial, "run_cap reached while it was asked")
            raise self._done(f"run_cap {self.plan.run_cap} reached")
        if self._past_grid(frozen):
            self._discard(trial, "every grid point was taken while it was asked")
            raise self._done("every grid point has been run")
        config = {**self._command_parameters(), **suggest_config(trial, self.spec)}
        trial.set_user_attr("config", config)
        return Ticket(trial.number, config, trial, retry_of(frozen))

    def _command_parameters(self) -> dict[str, str]:
        """Trainer parameters written into the sweep's command, as W&B's agent passes them.

        W&B's parameter file gives the run's config over them, so the config is laid on top.
        """
        if not self.spec.runs_project_trainer:
            return {}
        words = entry_words(self.spec.command, os.environ)
        return literal_parameters(words.arguments)[0]

    def _past_grid(self, trial: FrozenTrial) -> bool:
        """True if every grid point went to trials numbered before this one (a race lost)."""
        sampler = self.plan.sampler
        if not isinstance(sampler, WandbGridSampler):
            return False
        return sampler.place(self.study, trial) >= sampler.size

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _check_open(self) -> None:
        state = self.study.user_attrs.get("state", "running")
        if state == "stopped":
            raise SweepDone("the sweep was stopped")
        if state == "paused":
            raise SweepPaused("the sweep is paused")
        trials = self.study.get_trials(deepcopy=False)
        if self._target_reached(trials):
            raise self._finished(f"target {self.spec.metric.name} = {self.plan.target} reached")
        if why := self._out_of_trials(trials):
            raise self._done(why)

    def _target_reached(self, trials: list[FrozenTrial]) -> bool:
        scored = [_objective(t) for t in trials if t.state in _SCORED]
        return any(v is not None and self.plan.target_reached(v) for v in scored)

    def _out_of_trials(self, trials: list[FrozenTrial]) -> str:
        """Why no trial is left to hand out (run_cap, the grid), or ""."""
        if self.plan.run_cap is not None and _counted(trials) >= self.plan.run_cap:
            return f"run_cap {self.plan.run_cap} reached"
        waiting = any(t.state == TrialState.WAITING for t in trials)
        sampler = self.plan.sampler
        if (
            not waiting
            and isinstance(sampler, WandbGridSampler)
            and sampler.is_exhausted(self.study)
        ):
            return "every grid point has been run"
        return ""

    def _finish_if_spent(self) -> None:
        """After the last trial's result: the sweep is finished now, not at the next ask (an
        agent run with --count may never ask again, and status would say running)."""
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            return
        if self._target_reached(trials) or self._out_of_trials(trials):
            self._finished("")

    def _done(self, why: str) -> SweepDone:
        """Done, unless trials still run elsewhere: one whose agent dies will be queued again."""
        running = len(self._running())
        if running:
            return SweepDraining(f"{why}; {running} trial(s) still running elsewhere")
        return self._finished(why)

    def _finished(self, why: str) -> SweepDone:
        """The sweep ran out of trials: recorded as "finished", the state W&B shows for it."""
        if self.study.user_attrs.get("state", "running") == "running":
            self.study.set_user_attr("state", "finished")
        return SweepDone(why)

    def _over_cap(self, number: int) -> bool:
        """True if trials numbered before this one already fill run_cap (a race lost)."""
        if self.plan.run_cap is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        # Waiting retries count here: one queued while this trial was asked would run too.
        return _counted(trials, below=number, waiting=True) >= self.plan.run_cap

    def _discard(self, trial: optuna.Trial, why: str) -> None:
        trial.set_user_attr("discarded", why)
        self.study.tell(trial, state=TrialState.FAIL)
        self._let_go(trial.number, told=True)

    def _let_go(self, number: int, told: bool) -> None:
        """This agent is done with the trial: its heartbeat stops and its lock is freed. The
        lock file of a trial told its end goes (after tell: a reaper never sees it running);
        that of one given up untold stays, free, so the next reaper runs it again at once."""
        self._stop_heartbeat(number)
        if self.locks and told:
            self.locks.release(number)
        elif self.locks:
            self.locks.drop(number)

    # -- results -----------------------------------------------------------------------------
    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.spec.metric.name) if self.spec.metric else None
        if value is None:
            return False
        try:
            with answering(self.url):
                ticket.handle.report(float(value), step=epoch)
                return ticket.handle.should_prune()
        except StorageFault as fault:
            # Stop the trial here; `finish` raises it, writing nothing more.
            self._faults[ticket.number] = fault
            return True
        except UpdateFinishedTrialError:  # the sweep gave it up as dead meanwhile
            raise self._lost(ticket) from None

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        # A storage that failed under the trial (a full disk, the database gone, the journal
        # moved away) cannot record it as interrupted and queue it again: the trial is left
        # running for crash detection to do that. Its lock is freed (its file kept) and its
        # heartbeat stops here, so on a journal the next agent to ask for a trial fails it and
        # queues it again at once; on a database, the first to ask once its heartbeat has been
        # silent past the grace period. The StorageFault then ends this agent: one line, exit 1.
        told = False
        try:
            if fault := self._faults.pop(ticket.number, None):
                raise fault
            with answering(self.url):
                self._tell(ticket, status, summary, history, reason)
                self._finish_if_spent()
            told = True
        except (UpdateFinishedTrialError, ValueError):  # ValueError: "Cannot tell a FAIL trial"
            if not self._taken_away(ticket):
                raise
            raise self._lost(ticket) from None
        finally:
            self._let_go(ticket.number, told)

    def _tell(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str,
    ) -> None:
        trial = ticket.handle
        trial.set_user_attr("summary", dict(summary))
        trial.set_user_attr("history", history)
        if reason:
            trial.set_user_attr("failure_reason", reason)
        value = self._objective(summary, history)
        if value is not None:
            trial.set_user_attr("objective", value)
        if status == "completed" and value is None:
            status, reason = "failed", f"the metric {self.spec.metric.name} was never logged"
            trial.set_user_attr("failure_reason", reason)
        if status == "completed":
            self.study.tell(trial, value)
        elif status == "stopped":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            if status == "interrupted":
                self._retry(trial.number)

    @_answering
    def _taken_away(self, ticket: Ticket) -> bool:
        """True if someone else finished the trial: a reaper failed it as dead."""
        return self.storage.get_trial(self._trial_id(ticket.number)).state.is_finished()

    @_answering
    def _lost(self, ticket: Ticket) -> TrialLost:
        """The trial was failed as dead while its agent lived on: its heartbeat and lock go."""
        self._let_go(ticket.number, told=True)  # told, by the reaper
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        retries = [t.number for t in trials if ticket.number in _retry_history(t)]
        again = f"queued again as trial {retries[0]}" if retries else "not queued again"
        return TrialLost(
            f"{ticket.name} was failed as dead while this agent was silent for longer than the "
            f"heartbeat window (stopped or paused?), and {again}: dropped here"
        )

    def _objective(
        self, summary: Mapping[str, Any], history: list[dict[str, float]]
    ) -> float | None:
        """The metric's best value over the history and summary, for the goal (W&B's extremum)."""
        if self.spec.metric is None:
            return None
        name = self.spec.metric.name
        values = [epoch[name] for epoch in history if name in epoch]
        values += [summary[name]] if name in summary else []
        return objective.extremum(values, self.spec.goal)

    # -- crash safety ------------------------------------------------------------------------
    @_answering
    def reap_dead_trials(self) -> list[int]:
        """Fail the running trials whose agent died, and queue each to run again."""
        limit = heartbeats.grace(self.storage) if isinstance(self.storage, RDBStorage) else 0.0
        # Optuna's fail_stale_trials, but through _fail_dead so the reason is recorded, and
        # also for a trial whose agent died before its first heartbeat (Optuna skips those).
        dead = [t for t, silent in self._silences() if silent > limit]
        return [t.number for t in dead if self._fail_dead(t)]

    def _silences(self) -> list[tuple[FrozenTrial, float]]:
        """Running trials whose agent is not known alive, with how long each has been silent:
        seconds since its heartbeat (RDB), or inf for a free lock (journal)."""
        running = self._running()
        if isinstance(self.storage, RDBStorage):
            beats = heartbeats.silences(self.storage, self.study_id)
            return [(t, self._silence(t, beats.get(self._trial_id(t.number)))) for t in running]
        if self.locks is not None:
            return [(t, float("inf")) for t in running if self._owner_is_dead(t)]
        return []

    def _silence(self, trial: FrozenTrial, since_beat: float | None) -> float:
        """Seconds since the trial's heartbeat; with none yet, since this process first saw
        it so (its start time is another host's clock: no use for a deadline here)."""
        if since_beat is not None:
            return since_beat
        first = self._unbeaten.setdefault(trial.number, time.monotonic())
        return time.monotonic() - first

    @_answering
    def dead_trials(self) -> dict[int, str]:
        """Running trials whose agent looks dead: number -> why, in a few words."""
        if not isinstance(self.storage, RDBStorage):
            return {t.number: "its agent holds no trial lock" for t, _ in self._silences()}
        alive_within = 2 * heartbeats.interval(self.storage) + 1
        grace = heartbeats.grace(self.storage)
        return {
            t.number: f"no heartbeat for {silent:.0f} s, queued again after {grace:.0f} s"
            for t, silent in self._silences()
            if silent > alive_within
        }

    def _owner_is_dead(self, trial: FrozenTrial) -> bool:
        assert self.locks is not None
        if self.locks.owner_is_dead(trial.number):
            return True
        # An agent killed between asking for its trial and locking it leaves no lock file;
        # a live one locks it within milliseconds (journal times are local and naive).
        start = trial.datetime_start or dt.datetime.now()
        age = (dt.datetime.now() - start).total_seconds()
        return age > self.lock_grace and not self.locks.exists(trial.number)

    def _fail_dead(self, trial: FrozenTrial) -> bool:
        trial_id = self._trial_id(trial.number)
        try:
            self.storage.set_trial_user_attr(trial_id, "failure_reason", "agent died")
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except RuntimeError:  # it finished meanwhile (UpdateFinishedTrialError)
            return False
        self._retry(trial.number)
        return True

    def _retry(self, number: int) -> None:
        """Queue a failed trial's config to run again, linked to it (Optuna's retry record)."""
        RETRY(self.study, self.storage.get_trial(self._trial_id(number)))

    def _running(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def _start_heartbeat(self, trial: optuna.Trial) -> None:
        """RDB storage only: beat while the trial runs, so other hosts can tell it is alive."""
        if not isinstance(self.storage, RDBStorage):
            return
        storage = self.storage
        stop = threading.Event()
        self._heartbeats[trial.number] = stop
        trial_id = self._trial_id(trial.number)

        def beat() -> None:
            while not stop.wait(heartbeats.interval(self.storage)):
                # The database away for a moment: the next beat tries again (past the grace
                # period the trial is failed and queued again, and this agent drops it).
                with contextlib.suppress(Exception):
                    self.storage.record_heartbeat(trial_id)

        storage.record_heartbeat(trial_id)
        threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}").start()

    def _stop_heartbeat(self, number: int) -> None:
        stop = self._heartbeats.pop(number, None)
        if stop:
            stop.set()

    # -- reading -----------------------------------------------------------------------------
    @_answering
    def trials(self) -> list[TrialRecord]:
        return [
            _record(t)
            for t in self.study.get_trials(deepcopy=False)
            if "discarded" not in t.user_attrs
        ]

    @_answering
    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise UserError(f"unknown sweep state {state!r}: expected one of {', '.join(STATES)}")
        self.study.set_user_attr("state", state)

    @property
    @_answering
    def state(self) -> str:
        return self.study.user_attrs.get("state", "running")

    @_answering
    def info(self) -> SweepInfo:
        running = [r.number for r in self.trials() if r.state == "running"]
        dead = self.dead_trials()
        return SweepInfo(
            sweep_id=self.sweep_id,
            method=self.spec.method,
            metric=self._metric_name,
            goal=self.spec.goal,
            state=self.state,
            run_cap=self.plan.run_cap,
            agents_alive=sum(n not in dead for n in running),
            dead=dead,
        )

    @_answering
    def plots(self) -> list[Plot]:
        from kmnist.backends.optuna.plots import plots

        return plots(self.study, self._metric_name)

    @property
    def _metric_name(self) -> str:
        return self.spec.metric.name if self.spec.metric else "value"

    def close(self) -> None:
        """Nothing is held between trials: each trial's lock and heartbeat end with it."""

    def attach(self, ticket: Ticket, folder: Path) -> None:
        """Nothing to do: the trial's folder already lies in the sweep's artifact folder."""


def _counted(trials: list[FrozenTrial], below: int | None = None, waiting: bool = False) -> int:
    """Trials that use up run_cap: all that ran or run, bar failures queued to run again.

    With `below`, only trials numbered below it count; a retry is numbered after the trial it
    replaces, so the retry links are read from all trials.
    """
    rerun = retried(trials)
    ran = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    ran += (TrialState.WAITING,) if waiting else ()
    return sum(
        t.state in ran
        or (
            t.state == TrialState.FAIL and t.number not in rerun and "discarded" not in t.user_attrs
        )
        for t in trials
        if below is None or t.number < below
    )


def _retry_history(trial: FrozenTrial) -> list[int]:
    """The trials this one re-runs, oldest first (Optuna's retry record)."""
    return list(trial.system_attrs.get("retry_history", ()))


def _retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one re-runs, from the record RetryTrial leaves."""
    with _quiet_experimental():
        return RetryFailedTrialCallback.retried_trial_number(trial)


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Optuna marks its public readers of the retry record experimental: no warning to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


_SCORED = (TrialState.COMPLETE, TrialState.PRUNED)


def _objective(trial: FrozenTrial) -> float | None:
    """What a trial scored: its objective (best over its history), else its told value."""
    return trial.user_attrs.get("objective", trial.value)


def _spec_of(study: Study) -> SweepSpec:
    spec, problems = check_source(parse(study.user_attrs.get("sweep_yaml", "")))
    if spec is None:
        first = problems[0].render(study.study_name) if problems else "no sweep definition"
        raise UserError(f"sweep {study.study_name} holds an invalid definition: {first}")
    return spec


def _record(t: FrozenTrial) -> TrialRecord:
    duration = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None
    )
    return TrialRecord(
        number=t.number,
        state=_RECORD_STATE.get(t.state, t.state.name.lower()),
        config=t.user_attrs.get("config", dict(t.params)),
        value=_objective(t),
        summary=t.user_attrs.get("summary", {}),
        epochs=len(t.intermediate_values) or len(t.user_attrs.get("history", [])),
        duration=duration,
        reason=t.user_attrs.get("failure_reason", ""),
        retry_of=retry_of(t),
    )


def _shown(url: str) -> str:
    return mask(url)
