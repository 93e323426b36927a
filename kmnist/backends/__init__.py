"""Search engines behind two small faces: the worker face hands out trials and takes results
back (agents); the control face reads and steers a sweep (people).

Backends see configs and metrics as plain data; they never import a model or the trainer. The
resolver below (`engine_of`, `create_sweep`, `open_sweep`, `open_control`) is the one place that
tells the engines apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kmnist.errors import UserError

if TYPE_CHECKING:
    from kmnist.backends.wandb.offline import OfflineRun
    from kmnist.sweep import SweepSpec


class SweepDone(Exception):
    """No more trials: the sweep is finished (run_cap, grid exhausted, target met, stopped)."""


class SweepPaused(Exception):
    """No trial for now: the sweep is paused; ask again later."""


class SweepDraining(SweepDone):
    """Done handing out new trials (run_cap reached, grid run), but trials still run elsewhere:
    should one of their agents die, its trial is queued again, and the next ask gets it. A
    caller that may wait for that (the agent) catches this before SweepDone."""


class TrialLost(Exception):
    """The trial is no longer this agent's: the sweep gave it up as dead (its agent was silent
    past the heartbeat window, e.g. stopped or paused) and queued it to run again elsewhere."""


class UnknownSweep(UserError):
    """The sweep id names no sweep in this storage."""


@dataclass
class Ticket:
    """A trial handed to an agent: its number, its config, the engine's handle.

    The config is what the trainer reads: flat (a group's parameters under their own names) and
    typed, whichever engine handed it out."""

    number: int
    config: dict[str, Any]
    handle: Any = None
    retry_of: int | None = None
    label: str = ""  # how the engine names it to people, when not "trial <number>"
    refused: str = ""  # why it cannot be trained (e.g. a config the trainer refuses): failed

    @property
    def name(self) -> str:
        return self.label or f"trial {self.number}"


@dataclass
class TrialRecord:
    """One trial as the leaderboard shows it."""

    number: int
    state: str  # running, completed, pruned, failed, waiting
    config: dict[str, Any]
    value: float | None  # the sweep metric
    summary: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    duration: float | None = None
    reason: str = ""
    retry_of: int | None = None
    values: list[float] | None = None  # each objective's value, when the sweep has several


@dataclass
class SweepInfo:
    """A sweep as the reading commands describe it, beside its trials."""

    sweep_id: str
    method: str
    metric: str  # the sweep metric's name; "value" when the sweep has none
    goal: str  # maximize or minimize
    state: str  # running, paused or stopped
    run_cap: int | None = None
    agents_alive: int = 0  # agents whose running trial shows they are alive
    # Running trials whose agent looks dead (free lock, silent heartbeat): number -> why.
    dead: dict[int, str] = field(default_factory=dict)
    # (name, goal) of each objective; more than one: a multi-objective sweep
    objectives: list[tuple[str, str]] = field(default_factory=list)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


@dataclass
class Plot:
    """One figure of a sweep's report: a plotly figure, or why there is none yet."""

    title: str
    figure: Any = None
    missing: str = ""


class WorkerSweep(Protocol):
    """A sweep as its agents see it: hand out trials, take their epochs and results back."""

    sweep_id: str
    # True: `attach` stores a trial's files with the engine (a W&B run's artifact); False:
    # they stay on the agent's disk, and the agent keeps the best by `score`.
    holds_artifacts: bool

    @property
    def goal(self) -> str:
        """maximize or minimize: how `score` ranks trials."""
        ...

    def score(self, summary: Mapping[str, Any], history: list[dict[str, float]]) -> float | None:
        """The trial's value as the sweep ranks it (`kmnist.sweep.objective.trial_value`)."""
        ...

    def next_trial(self) -> Ticket:
        """A trial to run; raises SweepDone or SweepPaused."""
        ...

    def report(self, ticket: Ticket, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record one epoch; True asks the trial to stop (early termination)."""
        ...

    def finish(
        self,
        ticket: Ticket,
        status: str,
        summary: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str = "",
    ) -> None:
        """status: completed, stopped (pruned), failed, or interrupted (run again elsewhere)."""
        ...

    def attach(self, ticket: Ticket, folder: Path) -> None:
        """Store the files a trial produced (its weights, probabilities and config, in
        `folder`) with the trial, before `finish` (see `holds_artifacts`)."""
        ...

    def close(self) -> None:
        """The agent is done with the sweep: give back what it holds for handing out trials."""
        ...


class SweepControl(Protocol):
    """A sweep as people read and steer it: its trials, state and figures. A W&B sweep has
    none here: W&B's UI and `wandb sweep --pause|--resume|--stop` are its control face."""

    sweep_id: str

    def trials(self) -> list[TrialRecord]: ...

    def info(self) -> SweepInfo: ...

    def plots(self) -> list[Plot]:
        """The figures of the sweep's report."""
        ...

    def set_state(self, state: str) -> None:
        """running, paused or stopped."""
        ...


# -- the resolver: the one place that tells the engines apart ---------------------------------
def engine_of(sweep_id: str) -> str:
    """ "wandb" for W&B's `entity/project/id` paths (Optuna sweep ids never hold a slash),
    else "optuna"."""
    return "wandb" if "/" in sweep_id else "optuna"


def _is_wandb(sweep_id: str) -> bool:
    return engine_of(sweep_id) == "wandb"


def choose_engine(backend: str) -> tuple[str, str]:
    """(engine, why) for `--backend auto|wandb|optuna`: auto takes W&B when an API key is set
    and its server answers; `wandb` fails here, in one line, when W&B is out."""
    from kmnist.backends.wandb.backend import choose

    return choose(backend)


def create_sweep(
    spec_text: str,
    spec: SweepSpec,
    engine: str,
    *,
    name: str | None = None,
    storage: str | None = None,
    project: str | None = None,
    entity: str | None = None,
    bayes_startup: int | None = None,
    allow_code: bool = False,
) -> str:
    """Register a sweep file that validated as `spec` on `engine`; its sweep id.

    W&B gets the file unchanged (bar `name`, when given); the offline engine stores the
    checked definition in `storage`, named `name` (else the file's `name`).
    """
    if engine == "wandb":
        from kmnist.backends.wandb import backend as wandb_backend

        config = wandb_backend.sweep_config(spec_text, name)
        return str(wandb_backend.create_sweep(config, project, entity).path)
    from kmnist.backends.optuna.backend import create_sweep as create_study

    return create_study(spec_text, spec, name, storage, bayes_startup, allow_code)


def warm_start(sweep_id: str, earlier_id: str, storage: str | None = None) -> tuple[int, int]:
    """Tell a new offline sweep the finished trials of an earlier one in the same storage, as
    W&B's scheduler tells existing runs: (trials told, trials outside its parameters skipped)."""
    if _is_wandb(sweep_id) or _is_wandb(earlier_id):
        raise UserError("--warm-start: offline sweeps only (W&B's scheduler tells its own runs)")
    from kmnist.backends.optuna.backend import OptunaSweep
    from kmnist.backends.optuna.stored import load_sweep
    from kmnist.backends.optuna.warm_start import seed

    seeded = seed(OptunaSweep(sweep_id, storage), load_sweep(earlier_id, storage))
    return seeded.told, seeded.skipped


def open_sweep(
    sweep_id: str, storage: str | None = None, wandb_mode: str = "off", allow_code: bool = False
) -> WorkerSweep:
    """The worker face of the sweep a sweep id names, on its engine.

    `storage` is where Optuna sweeps live; `wandb_mode` (off, offline, online) also logs every
    trial of an Optuna sweep as a W&B run (a W&B sweep's trials are W&B runs already);
    `allow_code` lets a scheduler sweep run the user's own study file on this machine.
    """
    if _is_wandb(sweep_id):
        from kmnist.backends.wandb.sweep import WandbSweep

        return WandbSweep.parse(sweep_id)
    from kmnist.backends.optuna.backend import OptunaSweep
    from kmnist.backends.wandb.trials import logged

    return logged(OptunaSweep(sweep_id, storage, allow_code=allow_code), wandb_mode)


def open_control(sweep_id: str, storage: str | None = None) -> SweepControl:
    """The control face of the sweep a sweep id names; for a W&B sweep, one line saying where
    W&B shows and controls it."""
    if _is_wandb(sweep_id):
        from kmnist.backends.wandb.backend import SweepPath, sweep_url

        page = sweep_url(SweepPath.parse(sweep_id)) or "its sweep page in W&B"
        raise UserError(
            f"{sweep_id} is a W&B sweep: its leaderboard is {page}; "
            f"`wandb sweep --pause|--resume|--stop {sweep_id}` controls it"
        )
    from kmnist.backends.optuna.reading import OptunaSweepControl

    return OptunaSweepControl(sweep_id, storage)


def offline_runs(sweep_id: str, include_synced: bool = False) -> list[OfflineRun]:
    """The offline W&B runs the agents of an Optuna sweep wrote, to upload."""
    if _is_wandb(sweep_id):
        raise UserError(f"{sweep_id} is a W&B sweep: its runs are in W&B already")
    from kmnist.backends.wandb.offline import runs_to_sync

    return runs_to_sync(sweep_id, include_synced)


def is_host_local(storage: str) -> bool:
    """Whether a storage URL names a file on this host (a journal), not a server."""
    from kmnist.backends.optuna.storage import journal_path

    return journal_path(storage) is not None


ARTIFACTS_ENV = "KMNIST_ARTIFACTS_DIR"


def artifact_dir(sweep_id: str, storage: str | None = None, root: Path | None = None) -> Path:
    """Where a sweep's trial artifacts live: under `root` (or $KMNIST_ARTIFACTS_DIR) if given,
    else beside the journal file, else (a server storage, a W&B sweep) in the user data dir;
    always in a folder named after the sweep."""
    import platformdirs

    chosen = root or os.environ.get(ARTIFACTS_ENV)
    if not chosen:
        chosen = Path(platformdirs.user_data_dir("kmnist-sweep")) / "artifacts"
        if not _is_wandb(sweep_id):
            from kmnist.backends.optuna.storage import journal_path, storage_url

            journal = journal_path(storage_url(storage))
            chosen = journal.parent / "artifacts" if journal else chosen
    return Path(chosen).expanduser() / sweep_id.replace("/", "--")
