"""`kmnist-sweep create | agent | run | ls | leaderboard | status | report | stop | pause | resume`.

Thin commands: a sweep id is opened with `kmnist.backends.open_sweep` (which engine it names
is decided there, nowhere else), worked through by `kmnist.agent.loop`, read through the
`Sweep` interface, and rendered here.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kmnist.agent import spawn
from kmnist.agent.gpu_lease import lease_device
from kmnist.backends import artifact_dir, open_control, open_sweep
from kmnist.cli.console import err_console, stdout_console
from kmnist.cli.console import say as _say
from kmnist.cli.options import (
    ALLOW_CODE,
    ARTIFACTS,
    BAYES_STARTUP,
    MAX_AGENTS,
    STORAGE,
    lease_options,
)
from kmnist.masking import mask
from kmnist.results import leaderboard
from kmnist.results.progress import progress

if TYPE_CHECKING:  # imported lazily at run time: optuna and torch take a second to import
    from kmnist.agent.loop import AgentSummary
    from kmnist.backends import SweepControl, Ticket, WorkerSweep
    from kmnist.contract import TrialResult
    from kmnist.sweep import SweepSpec

# Tables as wide as they need when piped: a leaderboard has a column per varied parameter.
console = stdout_console(piped_width=220)


# -- create ----------------------------------------------------------------------------------
@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--backend",
    type=click.Choice(["auto", "wandb", "optuna"]),
    default="auto",
    show_default=True,
    help="Search engine (auto: W&B when an API key is set and its server answers, else Optuna).",
)
@STORAGE
@click.option("--name", help="Sweep name [default: the file's `name`, else 'sweep'].")
@click.option("--project", help="W&B project [default: the file's `project`, else kmnist-sweep].")
@click.option("--entity", help="W&B entity (user or team) [default: the file's, else yours].")
@BAYES_STARTUP
@ALLOW_CODE
@click.option(
    "--warm-start",
    metavar="SWEEP_ID",
    help="Seed the new (offline) sweep's search with an earlier sweep's finished trials over "
    "the same parameters, as W&B's scheduler tells existing runs.",
)
def create(
    file: Path,
    backend: str,
    storage: str | None,
    name: str | None,
    project: str | None,
    entity: str | None,
    bayes_startup: int | None,
    allow_code: bool,
    warm_start: str | None,
) -> None:
    """Validate FILE and register it as a sweep; prints the id and the agent command."""
    from kmnist.backends import create_sweep, open_control
    from kmnist.backends import warm_start as seed_from
    from kmnist.cli import wandb_commands
    from kmnist.errors import UserError
    from kmnist.sweep import load

    spec = load(file)  # a bad file gets its one line before any backend is chosen or contacted
    engine = wandb_commands.pick_backend(backend)
    text = file.read_text(encoding="utf-8")
    if engine == "wandb":
        if warm_start:
            raise UserError("--warm-start seeds an offline sweep: create it with --backend optuna")
        sweep_id = create_sweep(text, spec, engine, name=name, project=project, entity=entity)
        wandb_commands.say_created(sweep_id, spec, bayes_startup)
        return
    if warm_start:
        open_control(warm_start, storage)  # an unknown sweep is one line before any is made
        if spec.method == "grid":
            raise UserError("--warm-start: a grid visits every point whatever ran before")
    sweep_id = _create_offline(file, storage, name, bayes_startup, spec, allow_code)
    click.echo(sweep_id)
    if warm_start:
        told, skipped = seed_from(sweep_id, warm_start, storage)
        _say(
            f"warm start: {told} finished trial(s) of {warm_start} told to the search; "
            f"{skipped} outside this sweep's parameters skipped"
        )
    _say(f"start agents with: {_agent_command(sweep_id, storage, allow_code)}")


def _create_offline(
    file: Path,
    storage: str | None,
    name: str | None,
    bayes_startup: int | None,
    spec: SweepSpec | None = None,
    allow_code: bool = False,
) -> str:
    """Register FILE on the offline engine (named NAME, else its `name`, else its stem)."""
    from kmnist.backends import create_sweep
    from kmnist.sweep import load

    spec = spec or load(file)
    text = file.read_text(encoding="utf-8")
    name = name or spec.name or file.stem
    return create_sweep(
        text,
        spec,
        "optuna",
        name=name,
        storage=storage,
        bayes_startup=bayes_startup,
        allow_code=allow_code,
    )


def _agent_command(sweep_id: str, storage: str | None, allow_code: bool = False) -> str:
    words = ["kmnist-sweep", "agent", sweep_id, *(["--allow-code"] if allow_code else [])]
    if not storage:
        return shlex.join(words)
    shown = mask(storage)
    command = shlex.join([*words, "--storage", shown])
    if shown == storage:
        return command
    return f"{command} (*** is the password, not shown; or set KMNIST_SWEEP_STORAGE)"


# -- agent -----------------------------------------------------------------------------------
@click.command()
@click.argument("sweep_id")
@STORAGE
@click.option("--count", type=click.IntRange(min=1), help="Run at most this many trials.")
@click.option("--device", help="cuda, cuda:1, mps or cpu [default: the best available].")
@click.option("--gpus", help="'all' or a list such as 0,1: one agent process per GPU.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for this agent.")
@click.option(
    "--max-failures",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stop after this many failed trials in a row.",
)
@click.option("--quiet", is_flag=True, help="No line per trial.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Exit when no trial is left to start, even while trials still run elsewhere "
    "[default: wait for them, and run any whose agent dies; --count implies it].",
)
@click.option(
    "--wandb",
    "wandb_mode",
    type=click.Choice(["off", "offline", "online"]),
    help="Also log every trial as a W&B run; sync offline runs later with `kmnist-sweep sync` "
    "[default: offline when WANDB_MODE=offline, else off].",
)
@click.option(
    "--keep-artifacts",
    "keep",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Keep the weights and probabilities of the best N trials of the sweep (0: none); "
    "on a W&B sweep every run logs its own as a W&B artifact (0: none).",
)
@ARTIFACTS
@lease_options
@ALLOW_CODE
def agent(
    sweep_id: str,
    storage: str | None,
    count: int | None,
    device: str | None,
    gpus: str | None,
    threads: int | None,
    max_failures: int,
    quiet: bool,
    no_wait: bool,
    wandb_mode: str | None,
    keep: int,
    artifacts_root: Path | None,
    lease_dir: Path | None,
    gpu_share: int | None,
    allow_code: bool,
) -> None:
    """Work through sweep SWEEP_ID: pull trials, train them here, report back.

    SWEEP_ID with slashes (entity/project/id) is a W&B sweep: W&B hands out the runs."""
    from kmnist.agent.device import check as check_device
    from kmnist.cli.wandb_commands import wandb_mode as default_wandb_mode

    devices = spawn.local_devices(gpus)
    if len(devices) > 1:
        sys.exit(spawn.per_gpu(devices, sys.argv[1:], storage))
    device = check_device(_pick_device(devices, device, lease_dir, gpu_share))
    kept = (artifact_dir(sweep_id, storage, artifacts_root), keep)
    sweep = open_sweep(sweep_id, storage, default_wandb_mode(wandb_mode), allow_code)
    wait = not no_wait and count is None
    summary = _work(sweep, device, count, max_failures, threads, quiet, wait, kept)
    # One line however long: scripts and people read the last line for why the agent stopped.
    _say(f"agent done: {summary.line()}")
    sys.exit(0 if summary.ok else 1)


def _pick_device(
    devices: list[str], device: str | None, lease_dir: Path | None, gpu_share: int | None
) -> str | None:
    """The one GPU --gpus named, else --device, else a GPU leased under --lease-dir."""
    if devices:
        return devices[0]
    if lease_dir and not device:  # replicas that all see every GPU: each leases its own
        return lease_device(lease_dir, gpu_share, log=_say)
    return device


def _work(
    sweep: WorkerSweep,
    device: str | None,
    count: int | None,
    max_failures: int,
    threads: int | None,
    quiet: bool,
    wait: bool,
    kept: tuple[Path, int],
) -> AgentSummary:
    """Run the agent loop over `sweep`; `kept`: the best N trials' files kept in this folder
    (an offline sweep's), or logged with their W&B runs."""
    import torch

    from kmnist.agent.keeper import keeper_for
    from kmnist.agent.loop import Agent

    if threads:
        torch.set_num_threads(threads)
    on_trial = None if quiet else _print_trial
    keeper = keeper_for(sweep, *kept)
    agent = Agent(
        sweep, device, count, max_failures, on_trial=on_trial, keep=keeper, wait=wait, say=_say
    )
    return agent.run()


def _print_trial(ticket: Ticket, result: TrialResult) -> None:
    metric = result.summary.get("val/accuracy")
    shown = f" val/accuracy {metric:.4f}" if isinstance(metric, float) else ""
    why = f" ({result.reason})" if result.reason else ""
    _say(f"{ticket.name}: {result.status}{shown}{why}")


# -- run: create + local agents + live progress + leaderboard ---------------------------------
@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--agents",
    type=click.IntRange(1, MAX_AGENTS),
    help="Local agent processes [default: one per GPU, or one on a CPU host].",
)
@STORAGE
@click.option("--name", help="Sweep name [default: the file's `name`].")
@BAYES_STARTUP
@ALLOW_CODE
def run(
    file: Path,
    agents: int | None,
    storage: str | None,
    name: str | None,
    bayes_startup: int | None,
    allow_code: bool,
) -> None:
    """Run a whole sweep here: create it, start local agents, show progress, print results."""
    sweep_id = _create_offline(file, storage, name, bayes_startup, allow_code=allow_code)
    agents = agents or spawn.default_agents()
    _say(f"sweep {sweep_id}: {agents} local agent(s); follow with `kmnist-sweep status {sweep_id}`")
    procs = spawn.local_agents(sweep_id, agents, storage, allow_code)
    sweep = open_control(sweep_id, storage)
    with spawn.forwarding_stops(procs):  # `kill` or a closed terminal: the agents stop too
        _follow(sweep, procs)
    code = spawn.wait_all(procs)
    _print_leaderboard(sweep, "table", top=None)
    sys.exit(code)


def _follow(sweep: SweepControl, procs: list) -> None:
    """A live progress line until every agent has exited (Ctrl-C: stop them)."""
    try:
        with Live(_progress_table(sweep), console=err_console, refresh_per_second=1) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(_progress_table(sweep))
    except KeyboardInterrupt:
        spawn.terminate(procs)


def _progress_table(sweep: SweepControl) -> Table:
    info, records = sweep.info(), sweep.trials()
    now = progress(records, info)
    best = f"{now.best.value:.4f} (trial {now.best.number})" if now.best else "-"
    cap = f"/{info.run_cap}" if info.run_cap else ""
    table = Table.grid(padding=(0, 2))
    table.add_row(
        Text(info.sweep_id, style="bold"),
        f"done {now.done}{cap}",
        f"running {now.counts['running']}",
        f"pruned {now.counts['pruned']}",
        f"failed {now.counts['failed']}",
        f"best {info.metric} {best}",
    )
    return table


# -- reading ---------------------------------------------------------------------------------
@click.command(name="leaderboard")
@click.argument("sweep_id")
@STORAGE
@click.option("--top", type=click.IntRange(min=1), help="Show the best N trials only.")
@click.option(
    "--format", "fmt", type=click.Choice(leaderboard.FORMATS), default="table", show_default=True
)
def leaderboard_command(sweep_id: str, storage: str | None, top: int | None, fmt: str) -> None:
    """Trials ranked by the sweep metric: parameters that vary, accuracy, epochs, time."""
    _print_leaderboard(open_control(sweep_id, storage), fmt, top)


def _print_leaderboard(sweep: SweepControl, fmt: str, top: int | None) -> None:
    info, records = sweep.info(), sweep.trials()
    shown = leaderboard.rank(records, info.goal, info.objectives)[:top] if top else records
    title = f"{info.sweep_id} ({info.method}, {info.metric} {info.goal})"
    out = leaderboard.render(shown, info.goal, info.metric, fmt, title, info.objectives)
    if isinstance(out, str):
        click.echo(out, nl=False)
    else:
        console.print(out)


@click.command()
@STORAGE
def ls(storage: str | None) -> None:
    """List the sweeps in a storage."""
    from kmnist.backends.optuna.backend import list_sweeps

    table = Table(title="sweeps")
    for column in ("sweep", "created", "state", "trials", "best"):
        table.add_column(column)
    for s in list_sweeps(storage):
        best = f"{s.best:.4f}" if s.best is not None else ""
        if s.objectives > 1:  # no single best: a Pareto front (`leaderboard` ranks it)
            best = f"multi-objective ({s.objectives})"
        table.add_row(s.sweep_id, s.created, s.state, str(s.trials), best)
    console.print(table)


@click.command()
@click.argument("sweep_id")
@STORAGE
def status(sweep_id: str, storage: str | None) -> None:
    """Trials by state, best so far, agents alive, and an ETA when the sweep is capped."""
    sweep = open_control(sweep_id, storage)
    console.print(_progress_table(sweep))
    info = sweep.info()
    eta = progress(sweep.trials(), info).eta_minutes
    line = f"state {info.state}; agents alive {info.agents_alive}"
    if info.multi_objective:
        names = ", ".join(f"{name} ({goal})" for name, goal in info.objectives)
        line = f"multi-objective: {names}; {line}"
    if info.dead:
        why = ", ".join(f"trial {n}: {reason}" for n, reason in sorted(info.dead.items()))
        line += f"; agents dead {len(info.dead)} ({why})"
    console.print(line + (f"; ETA {eta:.1f} min" if eta is not None else ""), soft_wrap=True)


@click.command()
@click.argument("sweep_id")
@STORAGE
@ARTIFACTS
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the HTML page.",
)
def report(sweep_id: str, storage: str | None, artifacts_root: Path | None, out_dir: Path) -> None:
    """A self-contained HTML page: leaderboard, history, parallel coordinates, importances,
    and the best trial's confusion matrix, misclassified images and ensembles."""
    from kmnist.cli.results import kept_artifacts, warn
    from kmnist.results import report as html_report
    from kmnist.results.pictures import best_trial_sections

    sweep = open_control(sweep_id, storage)
    info = sweep.info()
    kept, damaged = kept_artifacts(artifact_dir(sweep_id, storage, artifacts_root), info.goal)
    warn(damaged)
    extras = best_trial_sections(kept, info.goal, _test_images() if kept else None)
    path = html_report.write(info, sweep.trials(), sweep.plots(), out_dir, extras)
    console.print(f"report written to {path}")


def _test_images() -> Any:
    """The 10k test images for the misclassified grid, or None where the data is not here."""
    from kmnist.errors import UserError
    from kmnist.trainer import data as kdata

    try:
        return kdata.load(download=False).test_images
    except UserError:
        return None


def _state_command(state: str, verb: str) -> click.Command:
    @click.command(
        name=verb, help=f"{verb.capitalize()} sweep SWEEP_ID (agents see it at their next trial)."
    )
    @click.argument("sweep_id")
    @STORAGE
    def command(sweep_id: str, storage: str | None) -> None:
        open_control(sweep_id, storage).set_state(state)
        console.print(f"sweep {sweep_id}: {state}")

    return command


COMMANDS = [
    create,
    agent,
    run,
    leaderboard_command,
    report,
    ls,
    status,
    _state_command("stopped", "stop"),
    _state_command("paused", "pause"),
    _state_command("running", "resume"),
]
