"""A sweep's definition as an engine stores it: checked once, at create, then trusted.

`create` validates the file and stores `dump(spec)`: the validated mapping as JSON, with a
format version, and the trainer parameters its `command` writes, typed once
(`command.command_config`). Opening a sweep `load`s it and builds the spec without checking it
again (a version of this project that cannot read the format says so). JSON holds what an engine can
search (strings, numbers, booleans, null, lists, mappings with string keys); a sweep file whose
values JSON cannot hold exactly (a YAML date, binary) is refused at create.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kmnist.sweep.command import CommandConfig, command_config
from kmnist.sweep.source import Path_, dotted
from kmnist.sweep.spec import SweepSpec, build
from kmnist.trainer.params import ConfigError

FORMAT = 2  # raise when the stored shape changes; `load` refuses a format it does not know
SPEC_ONLY = 1  # the format before `command` was stored: its command is typed when it loads


@dataclass(frozen=True)
class Definition:
    """A stored sweep: its spec, and the trainer parameters its command writes."""

    spec: SweepSpec
    command: CommandConfig


class DefinitionError(ValueError):
    """A stored definition this version cannot read; the message says why."""


def dump(spec: SweepSpec) -> str:
    """The spec's validated mapping as JSON text; ValueError names a value JSON cannot hold."""
    if where := _not_json(spec.raw, ()):
        path, value = where
        raise ValueError(
            f"{dotted(path) or 'the file'}: {value!r} ({type(value).__name__}) is not a plain "
            "value an engine can store: quote it as a string"
        )
    # The file's order kept: W&B's schedulers ask for the parameters in it, and the sampler's
    # draws follow that order (sorted, a seeded sweep would suggest other values than W&B's).
    command = asdict(command_config(spec))
    return json.dumps({"format": FORMAT, "sweep": spec.raw, "command": command})


def load(text: str) -> Definition:
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"not JSON ({exc.msg})") from None
    found = stored.get("format") if isinstance(stored, dict) else None
    if found not in (FORMAT, SPEC_ONLY):
        raise DefinitionError(f"format {found!r}, and this version reads format {FORMAT}")
    try:
        spec = build(stored["sweep"])
        command = CommandConfig(**stored["command"]) if found == FORMAT else command_config(spec)
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise DefinitionError(f"it does not build ({type(exc).__name__}: {exc})") from None
    return Definition(spec, command)


def _not_json(value: Any, path: Path_) -> tuple[Path_, Any] | None:
    """The first place (and value) JSON would not give back as it is, or None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, key
            if found := _not_json(item, (*path, key)):
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _not_json(item, (*path, f"[{index}]")):
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # Python's json writes and reads NaN and Infinity back exactly
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return path, value
