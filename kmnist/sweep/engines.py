"""What a valid sweep means for each engine: what only W&B runs, and what deserves a warning.

`validate` accepts exactly what W&B runs. Some of it the offline engine cannot run as W&B would
(another program, a custom scheduler, several objectives); `offline_refusals` names each, for
`create` to refuse with one line, for the summary to mention, and for `create --backend wandb`
to say (one line each, as a note: W&B runs it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kmnist.sweep import grid
from kmnist.sweep.command import ENVVAR, LAUNCHER, entry_words, literal_parameters
from kmnist.sweep.spec import PROJECT_PROGRAM, SweepSpec
from kmnist.sweep.text import is_integer

OFFLINE_METHODS = ("grid", "random", "bayes")


def offline_refusals(spec: SweepSpec, environ: Mapping[str, str] | None = None) -> list[str]:
    """Why the offline engine cannot run this sweep as W&B would (empty: it can)."""
    raw = spec.raw
    reasons: list[str] = []
    if spec.method not in OFFLINE_METHODS and spec.scheduler_engine is None:
        reasons.append(f"method {spec.method} runs on a W&B scheduler")
    if "job" in raw or "image_uri" in raw:
        reasons.append("job and image_uri run on W&B Launch")
    if not spec.runs_project_trainer:
        shown = spec.program or " ".join(spec.command or ())
        reasons.append(
            f"the offline agent runs only this project's trainer ({PROJECT_PROGRAM}), not {shown}"
        )
    else:
        reasons += _command_refusals(spec, os.environ if environ is None else environ)
    return reasons


def _command_refusals(spec: SweepSpec, environ: Mapping[str, str]) -> list[str]:
    """The launcher is read with this environment; the entry's words as written: each agent
    reads a parameter's `${envvar:NAME}` value (`command.CommandConfig`), never its name."""
    launcher = entry_words(spec.command, environ).launcher
    _, others = literal_parameters(entry_words(spec.command).arguments)
    foreign = [w for w in launcher if w not in LAUNCHER] + others
    if not foreign:
        return []
    if ENVVAR.search(foreign[0]):
        return [
            f"command word {foreign[0]!r}: the offline agent reads ${{envvar:NAME}} in a "
            "parameter's value only (--name=${envvar:NAME})"
        ]
    return [
        f"command word {foreign[0]!r} goes to the program as written; the offline agent runs "
        "the trainer in-process and takes only its --name=value parameters from command"
    ]


def notes(spec: SweepSpec) -> list[str]:
    """Short notes for the summary line: what only W&B runs, and grids W&B would run in full."""
    return [f"W&B only: {reason}" for reason in offline_refusals(spec)] + _wandb_notes(spec)


def wandb_create_notes(spec: SweepSpec) -> list[str]:
    """One line each for `create --backend wandb`: the notes of the summary line, the refusals
    worded for a file W&B takes (the offline `create` refuses the same file with the first)."""
    refused = [
        f"fine for W&B; the offline engine would refuse it: {reason}"
        for reason in offline_refusals(spec)
    ]
    return refused + _wandb_notes(spec)


def _wandb_notes(spec: SweepSpec) -> list[str]:
    """What W&B does with a file that deserves a word: a huge grid in full, a local controller."""
    found = []
    if spec.method == "grid":
        points = grid.size(spec.parameters)
        bounded = is_integer(spec.run_cap) and spec.run_cap <= grid.LIMIT
        if points > grid.LIMIT and not bounded:
            found.append(
                f"warning: {grid.shown(points)} grid points and no run_cap below {grid.LIMIT:,}: "
                "W&B runs every one"
            )
    if spec.scheduler_engine == "ax" and "search_space" in spec.raw["scheduler"]:
        found.append("warning: scheduler.search_space is unused by the ax engine (W&B ignores it)")
    controller = spec.raw.get("controller")
    if isinstance(controller, dict) and controller.get("type") == "local":
        found.append("controller local: on W&B, run `wandb controller SWEEP_ID` beside the agents")
    return found
