"""`kmnist-sweep create | agent | run | ls | leaderboard | status | stop | pause | resume`.

Thin commands over `kmnist.backends` (the Optuna engine) and `kmnist.agent.loop`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kmnist.agent.gpu_lease import lease_device, lease_options
from kmnist.errors import UserError
from kmnist.results import leaderboard

if TYPE_CHECKING:  # imported lazily at run time: optuna and torch take a second to import
    from kmnist.backends import Ticket
    from kmnist.backends.optuna.backend import OptunaSweep
    from kmnist.contract import TrialResult

# Tables as wide as they need when piped: a leaderboard has a column per varied parameter.
console = Console() if sys.stdout.isatty() else Console(width=220)
err_console = Console(stderr=True)

STORAGE = click.option(
    "--storage",
    envvar="KMNIST_SWEEP_STORAGE",
    show_envvar=True,
    help="Study storage: a journal file path, postgresql://..., redis://... "
    "[default: a journal file in the user data dir].",
)


def _open(sweep_id: str, storage: str | None) -> OptunaSweep:
    from kmnist.backends.optuna.backend import OptunaSweep
    from kmnist.cli.wandb_commands import refuse_wandb_sweep

    refuse_wandb_sweep(sweep_id)  # a W&B sweep's leaderboard and controls are W&B's
    return OptunaSweep(sweep_id, storage)


def _agent_command(sweep_id: str, storage: str | None) -> str:
    words = ["kmnist-sweep", "agent", sweep_id]
    if storage:
        from kmnist.backends.optuna.storage import mask

        words += ["--storage", mask(storage)]
    return shlex.join(words)


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
def create(
    file: Path,
    backend: str,
    storage: str | None,
    name: str | None,
    project: str | None,
    entity: str | None,
) -> None:
    """Validate FILE and register it as a sweep; prints the id and the agent command."""
    from kmnist.cli import wandb_commands
    from kmnist.sweep import load

    load(file)  # a bad file gets its one line before any backend is chosen or contacted
    if wandb_commands.pick_backend(backend) == "wandb":
        wandb_commands.create_on_wandb(file, name, project, entity)
        return
    sweep_id = create_sweep(file, storage, name)
    click.echo(sweep_id)
    err_console.print(
        f"start agents with: {_agent_command(sweep_id, storage)}", highlight=False, soft_wrap=True
    )


def create_sweep(file: Path, storage: str | None, name: str | None) -> str:
    from kmnist.backends.optuna.backend import create_sweep as create_study
    from kmnist.sweep import load

    spec = load(file)
    return create_study(
        file.read_text(encoding="utf-8"), spec, name or spec.name or file.stem, storage
    )


# -- agent -----------------------------------------------------------------------------------
@click.command()
@click.argument("sweep_id")
@STORAGE
@click.option("--count", type=click.IntRange(min=1), help="Run at most this many trials.")
@click.option("--device", help="cuda, cuda:1, mps or cpu [default: the best available].")
@click.option("--gpus", help="'all' or a list such as 0,1: one agent process per GPU.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for this agent.")
@click.option(
    "--max-failures",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stop after this many failed trials in a row.",
)
@click.option("--quiet", is_flag=True, help="No line per trial.")
@click.option(
    "--wandb",
    "wandb_mode",
    type=click.Choice(["off", "offline", "online"]),
    help="Also log every trial as a W&B run; sync offline runs later with `kmnist-sweep sync` "
    "[default: offline when WANDB_MODE=offline, else off].",
)
@lease_options
def agent(
    sweep_id: str,
    storage: str | None,
    count: int | None,
    device: str | None,
    gpus: str | None,
    threads: int | None,
    max_failures: int,
    quiet: bool,
    wandb_mode: str | None,
    lease_dir: Path | None,
    gpu_share: int,
) -> None:
    """Work through sweep SWEEP_ID: pull trials, train them here, report back.

    SWEEP_ID with slashes (entity/project/id) is a W&B sweep: W&B hands out the runs."""
    from kmnist.cli import wandb_commands

    devices = _gpu_devices(gpus) if gpus else []
    if len(devices) > 1:
        sys.exit(_run_per_gpu(devices, sys.argv[1:]))
    if devices:
        device = devices[0]
    elif lease_dir and not device:  # replicas that all see every GPU: each leases its own
        device = lease_device(lease_dir, gpu_share, log=_say)
    if "/" in sweep_id:
        sys.exit(
            wandb_commands.run_wandb_agent(sweep_id, device, count, max_failures, threads, quiet)
        )
    import torch

    from kmnist.agent.loop import Agent

    if threads:
        torch.set_num_threads(threads)
    sweep = wandb_commands.logged(_open(sweep_id, storage), wandb_commands.wandb_mode(wandb_mode))
    on_trial = None if quiet else _print_trial
    summary = Agent(sweep, device, count, max_failures, on_trial=on_trial).run()
    # One line however long: scripts and people read the last line for why the agent stopped.
    err_console.print(f"agent done: {summary.line()}", highlight=False, soft_wrap=True)
    sys.exit(0 if summary.ok else 1)


def _say(line: str) -> None:
    err_console.print(line, highlight=False)


def _print_trial(ticket: Ticket, result: TrialResult) -> None:
    metric = result.summary.get("val/accuracy")
    shown = f" val/accuracy {metric:.4f}" if metric is not None else ""
    why = f" ({result.reason})" if result.reason else ""
    err_console.print(
        f"trial {ticket.number}: {result.status}{shown}{why}", highlight=False, soft_wrap=True
    )


def _gpu_devices(gpus: str) -> list[str]:
    import torch

    try:  # checked first, so a typo is caught on a CPU host too
        ids = None if gpus == "all" else [int(part) for part in gpus.split(",")]
    except ValueError:
        raise UserError(f"--gpus {gpus!r}: expected 'all' or GPU numbers such as 0,1") from None
    if not torch.cuda.is_available():
        return []  # a CPU-only host just uses the CPU
    if ids is None:
        ids = list(range(torch.cuda.device_count()))
    return [f"cuda:{i}" for i in ids]


def _run_per_gpu(devices: list[str], argv: list[str]) -> int:
    """One agent process per GPU, each pinned to its device; exits with the worst code."""
    base = [a for a in argv if not a.startswith("--gpus")]
    if "--gpus" in argv:
        i = argv.index("--gpus")
        base = argv[:i] + argv[i + 2 :]
    procs = [
        subprocess.Popen([sys.executable, "-m", "kmnist.cli", *base, "--device", dev])
        for dev in devices
    ]
    return _wait_all(procs)


def _wait_all(procs: list[subprocess.Popen]) -> int:
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait() for p in procs]
    return max(codes, default=0)


# -- run: create + local agents + live progress + leaderboard ---------------------------------
@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--agents",
    type=click.IntRange(min=1),
    help="Local agent processes [default: one per GPU, or one on a CPU host].",
)
@STORAGE
@click.option("--name", help="Sweep name [default: the file's `name`].")
def run(file: Path, agents: int | None, storage: str | None, name: str | None) -> None:
    """Run a whole sweep here: create it, start local agents, show progress, print results."""
    sweep_id = create_sweep(file, storage, name)
    agents = agents or _default_agents()
    err_console.print(
        f"sweep {sweep_id}: {agents} local agent(s); follow with `kmnist-sweep status {sweep_id}`",
        highlight=False,
    )
    threads = max(1, (os.cpu_count() or 1) // agents)  # oversubscribed cores thrash
    cmd = [
        sys.executable,
        "-m",
        "kmnist.cli",
        "agent",
        sweep_id,
        "--quiet",
        "--threads",
        str(threads),
    ]
    env = {**os.environ, **({"KMNIST_SWEEP_STORAGE": storage} if storage else {})}
    procs = [subprocess.Popen(cmd, env=env) for _ in range(agents)]
    sweep = _open(sweep_id, storage)
    try:
        with Live(_progress_table(sweep), console=err_console, refresh_per_second=1) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(_progress_table(sweep))
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGTERM)
    code = _wait_all(procs)
    _print_leaderboard(sweep, "table", top=None)
    sys.exit(code)


def _default_agents() -> int:
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def _progress_table(sweep: OptunaSweep) -> Table:
    records = sweep.trials()
    counts = {
        s: sum(r.state == s for r in records) for s in ("completed", "pruned", "running", "failed")
    }
    ranked = leaderboard.rank(records, sweep.spec.goal)
    best = next((r for r in ranked if r.value is not None), None)
    metric = sweep.spec.metric.name if sweep.spec.metric else "value"
    table = Table.grid(padding=(0, 2))
    cap = f"/{sweep.plan.run_cap}" if sweep.plan.run_cap else ""
    shown = f"{best.value:.4f} (trial {best.number})" if best else "-"
    table.add_row(
        f"[bold]{sweep.sweep_id}[/bold]",
        f"done {counts['completed'] + counts['pruned']}{cap}",
        f"running {counts['running']}",
        f"pruned {counts['pruned']}",
        f"failed {counts['failed']}",
        f"best {metric} {shown}",
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
    _print_leaderboard(_open(sweep_id, storage), fmt, top)


def _print_leaderboard(sweep: OptunaSweep, fmt: str, top: int | None) -> None:
    records = leaderboard.rank(sweep.trials(), sweep.spec.goal)[:top] if top else sweep.trials()
    metric = sweep.spec.metric.name if sweep.spec.metric else "value"
    out = leaderboard.render(
        records,
        sweep.spec.goal,
        metric,
        fmt,
        title=f"{sweep.sweep_id} ({sweep.spec.method}, {metric} {sweep.spec.goal})",
    )
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
        best = (
            f"{s.best_trial.value:.4f}" if s.best_trial and s.best_trial.value is not None else ""
        )
        table.add_row(
            s.study_name,
            s.user_attrs.get("created", ""),
            s.user_attrs.get("state", ""),
            str(s.n_trials),
            best,
        )
    console.print(table)


@click.command()
@click.argument("sweep_id")
@STORAGE
def status(sweep_id: str, storage: str | None) -> None:
    """Trials by state, best so far, agents alive, and an ETA when the sweep is capped."""
    sweep = _open(sweep_id, storage)
    records = sweep.trials()
    console.print(_progress_table(sweep))
    running = [r for r in records if r.state == "running"]
    alive = sum(sweep.alive(r.number) for r in running)
    done = [r for r in records if r.state in ("completed", "pruned") and r.duration]
    line = f"state {sweep.state}; agents alive {alive}"
    if sweep.plan.run_cap and done and alive:
        left = max(0, sweep.plan.run_cap - len(done) - len(running))
        mean = sum(r.duration for r in done) / len(done)
        line += f"; ETA {mean * (left / alive + 0.5) / 60:.1f} min"
    console.print(line)


@click.command()
@click.argument("sweep_id")
@STORAGE
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the HTML page.",
)
def report(sweep_id: str, storage: str | None, out_dir: Path) -> None:
    """A self-contained HTML page: leaderboard, history, parallel coordinates, importances."""
    from kmnist.results import report as html_report

    sweep = _open(sweep_id, storage)
    metric = sweep.spec.metric.name if sweep.spec.metric else "value"
    path = html_report.write(sweep.study, sweep.trials(), sweep.spec.goal, metric, out_dir)
    console.print(f"report written to {path}")


def _state_command(state: str, verb: str) -> click.Command:
    @click.command(
        name=verb, help=f"{verb.capitalize()} sweep SWEEP_ID (agents see it at their next trial)."
    )
    @click.argument("sweep_id")
    @STORAGE
    def command(sweep_id: str, storage: str | None) -> None:
        _open(sweep_id, storage).set_state(state)
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
