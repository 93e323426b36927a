"""Offline W&B runs of a sweep: where they are written, and uploading them later.

Each sweep's runs live in a folder of their own, `ROOT/<sweep id>/wandb/offline-run-*`, with ROOT
= $WANDB_DIR, else the user data dir; so `sync` finds them by sweep id from any directory.
`wandb sync` retries forever when the server does not answer: it always runs under a timeout,
after a check that fails in seconds (no key, no server), and its output is masked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from kmnist.backends.wandb import auth as wandb_auth
from kmnist.backends.wandb import run_files
from kmnist.errors import UserError
from kmnist.masking import mask

SYNC_TIMEOUT_SECONDS = 600
# A sweep id names a folder here: a name (an Optuna id is a slug such as knn-random-3f9a1c),
# never a path that could reach outside ROOT ('', '.', '..', '../x', '/abs').
_NAME = re.compile(r"\w[\w.-]{0,199}")


@dataclass(frozen=True)
class OfflineRun:
    folder: Path

    @property
    def synced(self) -> bool:
        """`wandb sync` leaves `run-ID.wandb.synced` beside a run it uploaded."""
        return any(self.folder.glob("*.wandb.synced"))

    @property
    def complete(self) -> bool:
        """Its `.wandb` file holds the whole run (one cut short by a full disk does not)."""
        return any(run_files.complete(f) for f in self.folder.glob("*.wandb"))


def root() -> Path:
    if folder := os.environ.get("WANDB_DIR"):
        return Path(folder).expanduser()
    return Path(platformdirs.user_data_dir("kmnist-sweep")) / "wandb-runs"


def check_sweep_id(sweep_id: str) -> None:
    """UserError unless `sweep_id` is a sweep's name, or a W&B sweep path (names joined by
    '/'): never a path of folders."""
    parts = sweep_id.split("/")
    if len(parts) > 3 or not all(_NAME.fullmatch(part) for part in parts):
        raise _not_an_id(sweep_id)


def _not_an_id(sweep_id: str) -> UserError:
    return UserError(
        f"{sweep_id!r} is not a sweep id: an id is a name such as knn-random-3f9a1c (letters, "
        "digits, '-', '_', '.'), or entity/project/id for a W&B sweep, never a path; "
        "`kmnist-sweep ls` lists the sweeps"
    )


def sweep_dir(sweep_id: str) -> Path:
    """The folder given to `wandb.init(dir=...)` for the sweep's runs."""
    if not _NAME.fullmatch(sweep_id):
        raise _not_an_id(sweep_id)
    return root() / sweep_id


def offline_runs(sweep_id: str) -> list[OfflineRun]:
    runs = sorted((sweep_dir(sweep_id) / "wandb").glob("offline-run-*"))
    return [OfflineRun(folder) for folder in runs if any(folder.glob("*.wandb"))]


def runs_to_sync(sweep_id: str, include_synced: bool = False) -> list[OfflineRun]:
    """The sweep's whole offline runs (not synced yet, unless `include_synced`); runs cut
    short are left out (see `cut_short`)."""
    runs = offline_runs(sweep_id)
    whole = [run for run in runs if run.complete]
    if not whole:
        broken = f"; {len(runs)} cut short, left out ({_CUT_SHORT})" if runs else ""
        raise UserError(
            f"no offline W&B runs for sweep {sweep_id} in {sweep_dir(sweep_id)}{broken} "
            "(run its agents with --wandb offline; WANDB_DIR moves the folder)"
        )
    return [run for run in whole if include_synced or not run.synced]


_CUT_SHORT = "written while the disk was full, or their agent was killed"


def cut_short(sweep_id: str) -> str | None:
    """One line on the sweep's runs whose `.wandb` file is cut short, or None."""
    broken = [run for run in offline_runs(sweep_id) if not run.complete]
    if not broken:
        return None
    return (
        f"left out {len(broken)} offline run(s) cut short ({_CUT_SHORT}), e.g. "
        f"{broken[0].folder}; delete them to silence this"
    )


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
