"""The offline engine's worker face: a sweep as an Optuna study that hands out trials and takes
their results back, as W&B's engine would (its sampler, pruner, run_cap and target).

Liveness (trial locks, heartbeats, the reaper) is `liveness.py`; reading and steering a sweep
is `reading.py`; the study and the definition it was made with, `stored.py`.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends import SweepDone, SweepDraining, SweepPaused, Ticket, TrialLost
from kmnist.backends.optuna import ax_sampler, scheduler, user_code
from kmnist.backends.optuna.ax_sampler import AxDone
from kmnist.backends.optuna.axes import suggest
from kmnist.backends.optuna.bridge import StudyPlan, plan, suggest_config
from kmnist.backends.optuna.liveness import Liveness
from kmnist.backends.optuna.samplers import WandbGridSampler, retried, retry_of
from kmnist.backends.optuna.storage import again_if_cut, answering, open_storage, storage_url
from kmnist.backends.optuna.stored import (
    DEFINITION,
    SOURCE,
    answers,
    load_sweep,
    scored_value,
)
from kmnist.errors import StorageFault, UserError
from kmnist.sweep import SweepSpec, definition, objective
from kmnist.sweep.engines import offline_refusals
from kmnist.trainer.params import ConfigError, flatten_groups

# ask/tell with an RDB heartbeat warns that heartbeats belong to optimize(); we beat ourselves.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def create_sweep(
    spec_text: str,
    spec: SweepSpec,
    name: str | None = None,
    url: str | None = None,
    bayes_startup: int | None = None,
    allow_code: bool = False,
) -> str:
    """Register the sweep as a new study; returns its id.

    A sweep W&B runs but this engine cannot (see `engines.offline_refusals`) is refused here.
    The definition is stored as checked (`kmnist.sweep.definition`): opening trusts it.
    `bayes_startup`, kept with the study, is how many random trials bayes draws before its
    model takes over (None: W&B's start, `objective.WANDB_STARTUP`). A scheduler sweep with
    the user's own study runs its code only with `allow_code`: it is loaded and checked here,
    and its file's path and SHA-256 are stored, never the code.
    """
    _refuse_what_only_wandb_runs(spec)
    if spec.scheduler_engine == "ax":
        ax_sampler.require()  # here, not at the first agent
    if bayes_startup is not None and bayes_startup < 1:
        raise UserError(f"bayes startup trials: expected a whole number >= 1, got {bayes_startup}")
    try:
        stored = definition.dump(spec)
    except ValueError as exc:
        raise UserError(f"the offline engine cannot store this sweep: {exc}") from None
    base = name or spec.name or "sweep"
    sweep_id = f"{_slug(base)}-{secrets.token_hex(3)}"
    code = _checked_code(spec, sweep_id, allow_code)  # before the study: a refusal makes none
    storage = open_storage(url, create=True)  # the one command that may make a journal file
    with answering(storage_url(url)):
        directions = [goal for _, goal in spec.objectives] or [spec.goal]
        study = optuna.create_study(
            storage=storage, study_name=sweep_id, directions=directions, load_if_exists=False
        )
        study.set_user_attr(DEFINITION, stored)
        study.set_user_attr(SOURCE, spec_text)
        study.set_user_attr("sweep_id", sweep_id)
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        study.set_user_attr("created", created)
        study.set_user_attr("state", "running")
        if bayes_startup is not None:
            study.set_user_attr("bayes_startup", bayes_startup)
        if code:
            study.set_user_attr(user_code.CODE, code)
    return sweep_id


def _checked_code(spec: SweepSpec, sweep_id: str, allow_code: bool) -> dict[str, str] | None:
    """{source, sha256} of the user's study file, once it loaded and passed every check."""
    if not user_code.names_code(spec.raw):
        return None
    source = spec.raw["scheduler"]["source"]
    if not allow_code:
        raise UserError(
            f"scheduler.source {source} is code to run: pass {user_code.ALLOW} to allow it on "
            "this machine (and to each agent)"
        )
    digest = user_code.fingerprint(source)
    user_code.load(spec.raw, _facts(spec, sweep_id), None)
    return {"source": source, "sha256": digest}


def _facts(spec: SweepSpec, sweep_id: str) -> user_code.SweepFacts:
    """The sweep as W&B's scheduler describes it to an optimizer factory."""
    project = spec.project or "kmnist-sweep"
    return user_code.SweepFacts(
        sweep_id, spec.name or sweep_id, spec.entity or "", project, dict(spec.raw), sweep_id
    )


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
    objectives: int = 1  # more than one: a multi-objective sweep, with no single best


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
            len(s.directions),
        )
        for s in summaries
    ]


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(filter(None, slug.split("-")))[:40] or "sweep"


class OptunaSweep:
    """One offline sweep as its agents see it: hand out, report, finish."""

    holds_artifacts = False  # a trial's files stay on this host's disk, best N kept

    def __init__(
        self,
        sweep_id: str,
        url: str | None = None,
        seed: int | None = None,
        allow_code: bool = False,
    ) -> None:
        stored = load_sweep(sweep_id, url)
        self.stored, self.sweep_id, self.url = stored, sweep_id, stored.url
        self.study, self.storage, self.spec = stored.study, stored.storage, stored.spec
        startup = self.study.user_attrs.get("bayes_startup")
        user = self._user_study(allow_code)
        self.plan: StudyPlan = plan(self.spec, seed, startup=startup, user=user)
        self.study.sampler, self.study.pruner = self.plan.sampler, self.plan.pruner
        self.liveness = Liveness(stored)
        # Trial number -> the storage fault that cut it short (a full disk, the database gone)
        self._faults: dict[int, StorageFault] = {}

    def _user_study(self, allow_code: bool) -> user_code.UserStudy | user_code.UserAxClient | None:
        """The user's study of a scheduler sweep, rebuilt from the local file whose hash the
        sweep stored (nothing stored is executed); one line when not allowed or changed."""
        if not user_code.names_code(self.spec.raw):
            return None
        stored = self.study.user_attrs.get(user_code.CODE) or {}
        if not allow_code:
            raise UserError(
                f"sweep {self.sweep_id} runs the study in {stored.get('source', 'its source')}: "
                f"pass {user_code.ALLOW} to allow that code on this machine"
            )
        facts = _facts(self.spec, self.sweep_id)
        return user_code.load(self.spec.raw, facts, stored.get("sha256", "unknown"))

    @property
    def metric(self) -> str | None:
        """The (first) objective's name."""
        return self.spec.objectives[0][0] if self.spec.objectives else None

    @property
    def objective_names(self) -> list[str]:
        return [name for name, _ in self.spec.objectives]

    @property
    def goal(self) -> str:
        return self.spec.goal

    def score(self, summary: Mapping[str, Any], history: list[dict[str, float]]) -> float | None:
        """The trial's value as this sweep ranks it (`objective.trial_value`)."""
        if self.metric is None:
            return None
        if self.plan.wandb_scheduler:  # W&B's scheduler is told the summary's value
            return objective.summary_value(summary, self.metric)
        return objective.trial_value(history, summary, self.metric, self.goal)

    # -- handing out trials ------------------------------------------------------------------
    @answers
    def next_trial(self) -> Ticket:
        given = self.command_parameters  # this agent's environment: read before any trial
        self.liveness.reap_dead_trials()
        self._check_open()
        self.liveness.check_writable()  # before a trial exists that could not be locked
        trial = self.study.ask()  # its parameters are drawn once it is held (`_drawn`)
        try:
            with answering(self.url):
                return self._hand_out(trial, given)
        except StorageFault:
            self.liveness.let_go(trial.number, told=False)  # left to crash detection
            raise

    def _hand_out(self, trial: optuna.Trial, given: dict[str, Any]) -> Ticket:
        self.liveness.hold(trial.number)
        frozen = self.storage.get_trial(self.stored.trial_id(trial.number))
        if self._over_cap(trial.number):
            self._discard(trial, "run_cap reached while it was asked")
            raise self._done(f"run_cap {self.plan.run_cap} reached")
        if self._past_grid(frozen):
            self._discard(trial, "every grid point was taken while it was asked")
            raise self._done("every grid point has been run")
        try:
            drawn = self._drawn(trial)
        except AxDone as done:
            self._discard(trial, str(done))
            raise self._finished(str(done)) from None
        chosen = {**given, **drawn}
        trial.set_user_attr("config", chosen)  # as W&B shows a run's config: groups nested
        try:
            return Ticket(trial.number, flatten_groups(chosen), trial, retry_of(frozen))
        except ConfigError as exc:  # the user's search space gave a parameter twice
            return Ticket(trial.number, chosen, trial, retry_of(frozen), refused=str(exc))

    def _drawn(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's parameters: the user's define-by-run space, W&B's scheduler's flat ones,
        or the W&B-shaped config (groups nested) of the other methods."""
        if self.plan.search_space is not None:
            return dict(self.plan.search_space(trial))
        if self.plan.distributions is not None:  # W&B's scheduler: define-and-run
            return {name: suggest(trial, name, d) for name, d in self.plan.distributions.items()}
        return suggest_config(trial, self.spec)

    @functools.cached_property
    def command_parameters(self) -> dict[str, Any]:
        """Trainer parameters written into the sweep's command, typed at create; those read
        from the environment, with this agent's (once per agent, as W&B's agent reads them;
        not before a trial is asked: `create --warm-start` opens the sweep too).

        W&B's parameter file gives the run's config over them, so the config is laid on top.
        """
        try:
            return self.stored.definition.command.for_agent(os.environ)
        except UserError as exc:
            raise UserError(f"sweep {self.sweep_id}: {exc}") from None

    def _past_grid(self, trial: FrozenTrial) -> bool:
        """True if every grid point went to trials numbered before this one (a race lost)."""
        sampler = self.plan.sampler
        if not isinstance(sampler, WandbGridSampler):
            return False
        return sampler.place(self.study, trial) >= sampler.size

    def _check_open(self) -> None:
        state = self.stored.state
        if state == "stopped":
            raise SweepDone("the sweep was stopped")
        if state == "paused":
            raise SweepPaused("the sweep is paused")
        trials = self.study.get_trials(deepcopy=False)
        if self._target_reached(trials):
            raise self._finished(f"target {self.metric} = {self.plan.target} reached")
        if why := self._out_of_trials(trials):
            raise self._done(why)
        if self.plan.terminator is not None and self.plan.terminator(self.study):
            raise self._finished("the study's terminator ended the search")

    def _target_reached(self, trials: list[FrozenTrial]) -> bool:
        ours = [t for t in trials if t.state in _SCORED and "seeded_from" not in t.user_attrs]
        scored = [scored_value(t) for t in ours]
        return any(v is not None and self.plan.target_reached(v) for v in scored)

    def _out_of_trials(self, trials: list[FrozenTrial]) -> str:
        """Why no trial is left to hand out (run_cap, the grid), or ""."""
        if self.plan.run_cap is not None and counted(trials) >= self.plan.run_cap:
            return f"run_cap {self.plan.run_cap} reached"
        waiting = any(t.state == TrialState.WAITING for t in trials)
        # W&B's grid, or the user's Optuna GridSampler: both say when every point has run
        exhausted = getattr(self.plan.sampler, "is_exhausted", None)
        if not waiting and exhausted is not None and exhausted(self.study):
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
        running = len(self.stored.running())
        if running:
            return SweepDraining(f"{why}; {running} trial(s) still running elsewhere")
        return self._finished(why)

    def _finished(self, why: str) -> SweepDone:
        """The sweep ran out of trials: recorded as "finished", the state W&B shows for it."""
        if self.stored.state == "running":
            self.study.set_user_attr("state", "finished")
        return SweepDone(why)

    def _over_cap(self, number: int) -> bool:
        """True if trials numbered before this one already fill run_cap (a race lost)."""
        if self.plan.run_cap is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        # Waiting retries count here: one queued while this trial was asked would run too.
        return counted(trials, below=number, waiting=True) >= self.plan.run_cap

    def _discard(self, trial: optuna.Trial, why: str) -> None:
        trial.set_user_attr("discarded", why)
        self.study.tell(trial, state=TrialState.FAIL)
        self.liveness.let_go(trial.number, told=True)

    # -- results -----------------------------------------------------------------------------
    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.metric) if self.metric else None
        if value is None or len(self.spec.objectives) > 1:  # Optuna prunes one objective only
            return False
        step = scheduler.step_of(epoch) if self.plan.wandb_scheduler else epoch
        try:
            with answering(self.url):
                # Both may run twice: the same value again, a read.
                again_if_cut(lambda: ticket.handle.report(float(value), step=step))
                return again_if_cut(ticket.handle.should_prune)
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
            self.liveness.let_go(ticket.number, told)

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
        value = self.score(summary, history)
        if value is not None:
            trial.set_user_attr("objective", value)
        told = self.told(summary, value)
        if status == "completed" and told is None:
            missing = ", ".join(self.objective_names)
            status, reason = "failed", f"the metric {missing} was never logged"
            trial.set_user_attr("failure_reason", reason)
        if status == "completed":
            _tell(self.study, trial, told)
        elif status == "stopped":
            _tell(self.study, trial, state=TrialState.PRUNED)
        else:
            _tell(self.study, trial, state=TrialState.FAIL)
            if status == "interrupted":
                self.stored.retry(trial.number)

    def told(self, summary: Mapping[str, Any], value: float | None) -> Any:
        """What a completed trial is told: its score; on W&B's scheduler the summary's value of
        each objective (a list when there are several); None: it is told as failed."""
        if not self.plan.wandb_scheduler:
            return value
        values = scheduler.told_values(summary, self.objective_names)
        if values is None or len(values) > 1:
            return values
        return values[0]

    @answers
    def _taken_away(self, ticket: Ticket) -> bool:
        """True if someone else finished the trial: a reaper failed it as dead."""
        return self.storage.get_trial(self.stored.trial_id(ticket.number)).state.is_finished()

    @answers
    def _lost(self, ticket: Ticket) -> TrialLost:
        """The trial was failed as dead while its agent lived on: its heartbeat and lock go."""
        self.liveness.let_go(ticket.number, told=True)  # told, by the reaper
        trials = self.storage.get_all_trials(self.stored.study_id, deepcopy=False)
        retries = [t.number for t in trials if ticket.number in _retry_history(t)]
        again = f"queued again as trial {retries[0]}" if retries else "not queued again"
        return TrialLost(
            f"{ticket.name} was failed as dead while this agent was silent for longer than the "
            f"heartbeat window (stopped or paused?), and {again}: dropped here"
        )

    def close(self) -> None:
        """Nothing is held between trials: each trial's lock and heartbeat end with it."""

    def attach(self, ticket: Ticket, folder: Path) -> None:
        """Nothing to do: the trial's folder already lies in the sweep's artifact folder."""


_SCORED = (TrialState.COMPLETE, TrialState.PRUNED)
# Optuna's GridSampler asks the study to stop once the grid is spent, which raises outside
# optimize(); the outcome is already recorded (W&B's Optuna scheduler absorbs it the same way).
_STOP_OUTSIDE_OPTIMIZE = "`Study.stop` is supposed to be invoked inside"


def _tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, **kw: Any) -> None:
    try:
        study.tell(trial, values, **kw)
    except RuntimeError as exc:
        if _STOP_OUTSIDE_OPTIMIZE not in str(exc):
            raise


def counted(trials: list[FrozenTrial], below: int | None = None, waiting: bool = False) -> int:
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
        if (below is None or t.number < below) and "seeded_from" not in t.user_attrs
    )


def _retry_history(trial: FrozenTrial) -> list[int]:
    """The trials this one re-runs, oldest first (Optuna's retry record)."""
    return list(trial.system_attrs.get("retry_history", ()))
