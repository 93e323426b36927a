"""The online engine's calls to W&B's server: registering a sweep, and W&B's agent loop.

W&B's server samples the configs and applies hyperband; `kmnist.backends.wandb.sweep` turns
its agent loop into a `Sweep`. What lives here is what needs the server, each call after a
check that fails in seconds (no key, no server), with W&B's errors masked and made one line.
Like every backend, it never imports a model or the trainer.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kmnist.backends.wandb import auth as wandb_auth
from kmnist.errors import UserError, first_line
from kmnist.masking import mask

DEFAULT_PROJECT = "kmnist-sweep"
FALLBACK = "use `--backend optuna` to run the sweep offline"
MAX_ERROR_CHARS = 400  # a server may answer with a whole page


@dataclass(frozen=True)
class SweepPath:
    """A W&B sweep as `entity/project/id` (entity may be left to W&B's default)."""

    sweep_id: str
    project: str | None = None
    entity: str | None = None

    @classmethod
    def parse(cls, text: str) -> SweepPath:
        parts = text.split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise UserError(
                f"W&B sweep {text!r}: expected entity/project/sweep_id (or project/sweep_id)"
            )
        if len(parts) == 2:
            return cls(parts[1], parts[0])
        return cls(parts[2], parts[1], parts[0])

    def __str__(self) -> str:
        return "/".join(p for p in (self.entity, self.project, self.sweep_id) if p)


@dataclass(frozen=True)
class CreatedSweep:
    path: SweepPath
    url: str | None

    @property
    def agent_command(self) -> str:
        return shlex.join(["kmnist-sweep", "agent", str(self.path)])


def sweep_config(spec_text: str, name: str | None = None) -> dict[str, Any]:
    """The sweep file's mapping as W&B receives it: unchanged, bar an optional new name."""
    config = yaml.safe_load(spec_text)
    if name:
        config["name"] = name
    return config


def create_sweep(
    config: Mapping[str, Any], project: str | None = None, entity: str | None = None
) -> CreatedSweep:
    """Register a locally validated sweep config with W&B; raises UserError in one line."""
    wandb_auth.require(FALLBACK)
    import wandb

    project = project or config.get("project") or DEFAULT_PROJECT
    entity = entity or config.get("entity")
    said = io.StringIO()  # wandb.sweep prints the id and URL itself: we print them once
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        sweep_id = _call(
            f"cannot register the sweep with W&B ({FALLBACK})",
            wandb.sweep,
            dict(config),
            project=project,
            entity=entity,
        )
    _relay_warnings(said.getvalue())
    if not isinstance(sweep_id, str) or not sweep_id:
        raise UserError(f"W&B did not return a sweep id (got {sweep_id!r}); {FALLBACK}")
    # wandb.sweep sets WANDB_ENTITY/WANDB_PROJECT to the names the server answered with.
    path = SweepPath(
        sweep_id,
        os.environ.get("WANDB_PROJECT") or project,
        os.environ.get("WANDB_ENTITY") or entity,
    )
    return CreatedSweep(path, sweep_url(path))


def sweep_url(path: SweepPath) -> str | None:
    """Where the sweep's leaderboard is in W&B's UI (needs the entity)."""
    if not (path.entity and path.project):
        return None
    try:
        from wandb.util import api_to_app_url
    except ImportError:  # older wandb
        return None
    app = os.environ.get("WANDB_APP_URL", "").rstrip("/") or api_to_app_url(wandb_auth.base_url())
    quote = urllib.parse.quote
    return f"{app}/{quote(path.entity)}/{quote(path.project)}/sweeps/{quote(path.sweep_id)}"


def run_agent(path: SweepPath, function: Callable[[], None]) -> None:
    """W&B's agent loop, calling `function` in a thread once per run the sweep hands out.

    W&B passes each run's config through the environment (WANDB_SWEEP_PARAM_PATH and friends),
    asks a run to stop by raising an exception in that thread, and returns when the sweep is
    done or its thread gets KeyboardInterrupt.
    """
    wandb_auth.require("use `kmnist-sweep agent` with an Optuna sweep id to work offline")
    import wandb

    _call(
        f"the W&B agent for {path} stopped",
        wandb.agent,
        path.sweep_id,
        function=function,
        entity=path.entity,
        project=path.project,
    )


def _call(what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Call W&B; its failures become one line, with secrets masked."""
    try:
        return fn(*args, **kw)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # W&B raises many types (CommError, UsageError, ValueError...)
        said = mask(first_line(exc))
        said = said if len(said) <= MAX_ERROR_CHARS else said[:MAX_ERROR_CHARS] + "..."
        raise UserError(f"{what}: {said}") from None


def _relay_warnings(text: str) -> None:
    """Pass on what W&B warned about (e.g. sweep config warnings from the server), masked."""
    for line in text.splitlines():
        if "WARNING" in line or "ERROR" in line:
            print(mask(line), file=sys.stderr)


def choose(backend: str) -> tuple[str, str]:
    """(engine, why) for `--backend auto|wandb|optuna`; `wandb` fails here if W&B is out."""
    if backend == "optuna":
        return "optuna", ""
    why = wandb_auth.problem()
    if backend == "wandb":
        if why:
            raise wandb_auth.WandbUnavailable(f"{why}; {FALLBACK}")
        return "wandb", ""
    if why:
        return "optuna", f"W&B not used: {why}"
    return "wandb", f"W&B API key from {wandb_auth.key_source()}, server answers"


def load_for_wandb(file: Path, name: str | None = None) -> dict[str, Any]:
    """Validate `file` locally (every problem as FILE:LINE) and return what W&B is sent."""
    from kmnist.sweep import load

    load(file)
    return sweep_config(file.read_text(encoding="utf-8"), name)
