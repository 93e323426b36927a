"""The W&B side of the command line: `create --backend wandb|auto`, the default of
`agent ID --wandb`, and `sync ID`. Thin: parse, call one library function, render."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from kmnist.backends.wandb import backend as wandb_backend
from kmnist.cli.options import FiniteFloat
from kmnist.masking import mask
from kmnist.sweep.engines import wandb_create_notes

if TYPE_CHECKING:
    from kmnist.sweep import SweepSpec


def say(line: str) -> None:
    click.echo(mask(line), err=True)


# -- create ----------------------------------------------------------------------------------
def pick_backend(backend: str) -> str:
    """The engine for `create --backend`; `auto` says which it took and why."""
    from kmnist.backends import choose_engine

    engine, why = choose_engine(backend)
    if backend == "auto":
        say(f"backend: {engine} ({why})")
    return engine


def say_created(sweep_id: str, spec: SweepSpec, bayes_startup: int | None = None) -> None:
    """A sweep registered with W&B: its path on stdout, then on stderr what the offline engine
    would do otherwise (one line each), the URL and the agent commands."""
    path = wandb_backend.SweepPath.parse(sweep_id)
    click.echo(sweep_id)
    for note in wandb_create_notes(spec):  # after registering: a W&B error stays one line
        say(note)
    if bayes_startup is not None:
        say("--bayes-startup (KMNIST_BAYES_STARTUP) is for the offline engine: not sent to W&B")
    if url := wandb_backend.sweep_url(path):
        say(f"sweep page (leaderboard, plots): {url}")
    if spec.raw.get("scheduler") is not None:  # W&B's local scheduler suggests the runs
        say(f"start the scheduler with: wandb sweep-scheduler {sweep_id}")
    say(f"start agents with: {wandb_backend.CreatedSweep(path, url).agent_command}")
    say(f"   or W&B's own:   wandb agent {sweep_id}")


# -- agent -----------------------------------------------------------------------------------
def wandb_mode(choice: str | None) -> str:
    """--wandb for Optuna agents: as given, else offline when WANDB_MODE=offline, else off."""
    if choice:
        return choice
    return "offline" if os.environ.get("WANDB_MODE") == "offline" else "off"


# -- sync ------------------------------------------------------------------------------------
@click.command()
@click.argument("sweep_id")
@click.option("--project", help="W&B project for the runs [default: the one they were logged to].")
@click.option("--entity", help="W&B entity (user or team) [default: your default entity].")
@click.option("--dry-run", is_flag=True, help="List the runs that would be uploaded, and stop.")
@click.option("--include-synced", is_flag=True, help="Upload runs synced before, again.")
@click.option(
    "--timeout",
    # at most a week: a larger one overflows the poll that waits on `wandb sync`
    type=FiniteFloat(min=1, max=7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Seconds before giving up (wandb sync itself retries forever).",
)
def sync(
    sweep_id: str,
    project: str | None,
    entity: str | None,
    dry_run: bool,
    include_synced: bool,
    timeout: float,
) -> None:
    """Upload the offline W&B runs of sweep SWEEP_ID (logged with `agent --wandb offline`)."""
    from kmnist.backends import offline_runs
    from kmnist.backends.wandb import offline as wandb_offline

    wandb_offline.check_sweep_id(sweep_id)  # '..' or '/abs' would list runs of no sweep
    runs = offline_runs(sweep_id, include_synced)
    if note := wandb_offline.cut_short(sweep_id):
        say(f"warning: {note}")
    if not dry_run:
        from kmnist.backends.wandb import auth as wandb_auth

        wandb_auth.require("the runs stay on disk: sync again once W&B is reachable")
    where = "/".join(p for p in (entity, project) if p) or "the project they were logged to"
    verb = "would upload" if dry_run else "uploading"
    say(f"sweep {sweep_id}: {verb} {len(runs)} offline run(s) to {where}")
    for run in runs:
        click.echo(str(run.folder))
    if dry_run or not runs:
        return
    code = wandb_offline.sync(runs, project, entity, timeout, echo=say)
    if code != 0:
        say(f"`wandb sync` exited with code {code}")
        sys.exit(1)


COMMANDS = [sync]
