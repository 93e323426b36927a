"""The W&B side of the command line: `create --backend wandb|auto`, `agent ENTITY/PROJECT/ID`.
Thin: parse, call one library function, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kmnist.backends import wandb_backend


def say(line: str) -> None:
    click.echo(line, err=True)


# -- create ----------------------------------------------------------------------------------
def pick_backend(backend: str) -> str:
    """The engine for `create --backend`; `auto` says which it took and why."""
    engine, why = wandb_backend.choose(backend)
    if backend == "auto":
        say(f"backend: {engine} ({why})")
    return engine


def create_on_wandb(file: Path, name: str | None, project: str | None, entity: str | None) -> None:
    """Validate locally, register with W&B; the sweep path on stdout, URL and agent on stderr."""
    config = wandb_backend.load_for_wandb(file, name)
    created = wandb_backend.create_sweep(config, project, entity)
    click.echo(str(created.path))
    if created.url:
        say(f"sweep page (leaderboard, plots): {created.url}")
    say(f"start agents with: {created.agent_command}")
    say(f"   or W&B's own:   wandb agent {created.path}")


# -- agent -----------------------------------------------------------------------------------
def run_wandb_agent(
    sweep_id: str,
    device: str | None,
    count: int | None,
    max_failures: int,
    threads: int | None,
    quiet: bool,
) -> int:
    """`kmnist-sweep agent entity/project/id`: W&B's agent loop, trials in-process."""
    from kmnist.backends import wandb_auth

    path = wandb_backend.SweepPath.parse(sweep_id)
    wandb_auth.require("use `kmnist-sweep agent` with an Optuna sweep id to work offline")
    import torch

    from kmnist.wandb_agent import WandbAgent

    if threads:
        torch.set_num_threads(threads)
    on_run = None if quiet else _print_run
    summary = WandbAgent(path, device, count, max_failures, on_run=on_run).run()
    say(f"agent done: {summary.line()}")
    return 0 if summary.ok else 1


def _print_run(run_id: str, status: str, summary: dict[str, Any], reason: str) -> None:
    metric = summary.get("val/accuracy")
    shown = f" val/accuracy {metric:.4f}" if isinstance(metric, float) else ""
    why = f" ({reason})" if reason else ""
    say(f"run {run_id}: {status}{shown}{why}")


COMMANDS: list[click.Command] = []
