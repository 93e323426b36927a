"""Options several commands share."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kmnist.agent.gpu_lease import LEASE_DIR_ENV, SHARE_ENV
from kmnist.sweep.objective import WANDB_STARTUP

STORAGE = click.option(
    "--storage",
    envvar="KMNIST_SWEEP_STORAGE",
    show_envvar=True,
    help="Study storage: a journal file path, postgresql://..., redis://... "
    "[default: a journal file in the user data dir].",
)

ARTIFACTS = click.option(
    "--artifacts",
    "artifacts_root",
    envvar="KMNIST_ARTIFACTS_DIR",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the trials' weights and probabilities, one sub-folder per sweep "
    "[default: beside the journal file; the user data dir for a server storage].",
)

BAYES_STARTUP = click.option(
    "--bayes-startup",
    envvar="KMNIST_BAYES_STARTUP",
    show_envvar=True,
    type=click.IntRange(min=1),  # Optuna's GP cannot model with no trial done
    help="Offline bayes: random trials before the model takes over, kept with the sweep "
    f"[default: {WANDB_STARTUP}, as W&B's engine; a W&B sweep's server decides its own].",
)

# Off by default, never from the environment: a sweep's user code runs only where someone says so.
ALLOW_CODE = click.option(
    "--allow-code",
    is_flag=True,
    help="Let a scheduler sweep run its own Optuna study (scheduler.source) on this machine; "
    "the file must match the SHA-256 `create` stored.",
)

# The most agents, replicas or agents per GPU one command may ask for: a typo's 10**9 would
# fork that many processes or build that many slots before anything could refuse it.
MAX_AGENTS = 1024


class FiniteFloat(click.FloatRange):
    """click's FloatRange that also refuses nan and the infinities (`1e400` reads as inf):
    click's range check lets nan through, and no option here means an endless number."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class GpuShare(click.ParamType):
    """A whole number >= 1, or `auto` (None: decided from the GPUs' memory at lease time)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or str(value).strip().lower() == "auto":
            return None
        try:
            share = int(str(value).strip())
        except ValueError:
            share = 0
        if not 1 <= share <= MAX_AGENTS:
            self.fail(
                f"expected a whole number >= 1 or auto (at most {MAX_AGENTS}), got {value!r}",
                param,
                ctx,
            )
        return share


def lease_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--lease-dir` and `--gpu-share`, for `kmnist-sweep agent`."""
    command = click.option(
        "--gpu-share",
        envvar=SHARE_ENV,
        show_envvar=True,
        default="auto",
        show_default=True,
        type=GpuShare(),
        help="Agents per GPU under --lease-dir: N, or auto (one per 16 GiB of the smallest "
        "GPU's memory, 1 to 8); more agents than slots wait.",
    )(command)
    return click.option(
        "--lease-dir",
        envvar=LEASE_DIR_ENV,
        show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder shared by the host's agents: take a free GPU slot there (they spread "
        "over the GPUs by themselves).",
    )(command)
