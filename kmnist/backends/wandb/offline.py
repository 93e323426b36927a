"""Offline W&B runs of a sweep: where they are written, and uploading them later.

Each sweep's runs live in a folder of their own, `ROOT/<sweep id>/wandb/offline-run-*`, with ROOT
= $WANDB_DIR, else the user data dir; so `sync` finds them by sweep id from any directory.
`wandb sync` retries forever when the server does not answer: it always runs under a timeout,
after a check that fails in seconds (no key, no server), and its output is masked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from kmnist.backends.wandb import auth as wandb_auth
from kmnist.errors import UserError
from kmnist.masking import mask

SYNC_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class OfflineRun:
    folder: Path

    @property
    def synced(self) -> bool:
        """`wandb sync` leaves `run-ID.wandb.synced` beside a run it uploaded."""
        return any(self.folder.glob("*.wandb.synced"))


def root() -> Path:
    if folder := os.environ.get("WANDB_DIR"):
        return Path(folder).expanduser()
    return Path(platformdirs.user_data_dir("kmnist-sweep")) / "wandb-runs"


def sweep_dir(sweep_id: str) -> Path:
    """The folder given to `wandb.init(dir=...)` for the sweep's runs."""
    return root() / sweep_id


def offline_runs(sweep_id: str) -> list[OfflineRun]:
    runs = sorted((sweep_dir(sweep_id) / "wandb").glob("offline-run-*"))
    return [OfflineRun(folder) for folder in runs if any(folder.glob("*.wandb"))]


def runs_to_sync(sweep_id: str, include_synced: bool = False) -> list[OfflineRun]:
    runs = offline_runs(sweep_id)
    if not runs:
        raise UserError(
            f"no offline W&B runs for sweep {sweep_id} in {sweep_dir(sweep_id)} "
            "(run its agents with --wandb offline; WANDB_DIR moves the folder)"
        )
    return [run for run in runs if include_synced or not run.synced]


def sync_command(
    runs: list[OfflineRun], project: str | None = None, entity: str | None = None
) -> list[str]:
    """`wandb sync` for these runs (as a module of this interpreter: no PATH lookup)."""
    command = [sys.executable, "-m", "wandb", "sync", "--include-synced"]
    command += ["--project", project] if project else []
    command += ["--entity", entity] if entity else []
    return [*command, *(str(run.folder) for run in runs)]


def sync(
    runs: list[OfflineRun],
    project: str | None = None,
    entity: str | None = None,
    timeout: float = SYNC_TIMEOUT_SECONDS,
    echo: Callable[[str], None] = print,
) -> int:
    """Upload `runs` with `wandb sync`, its output masked line by line; its exit code."""
    wandb_auth.require("the runs stay on disk: sync again once W&B is reachable")
    command = sync_command(runs, project, entity)
    cwd = runs[0].folder.parent.parent  # `wandb sync` writes its debug log under ./wandb
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout ends its whole process group
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise UserError(
            f"`wandb sync` did not finish in {timeout:g} s (W&B retries forever when the server "
            "stops answering); runs already uploaded are kept, run `kmnist-sweep sync` again"
        ) from None
    for line in out.splitlines():
        echo(mask(line))
    return proc.returncode
