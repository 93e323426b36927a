"""A W&B sweep run's parameters, as W&B's agent hands them to the trainer.

W&B's agent writes the run's parameters to the YAML file named by WANDB_SWEEP_PARAM_PATH
(`name: {value: v}`, typed) and passes them as `${args}`: `--name=value` with `str(value)`, so
booleans arrive as True/False and a nested group as a Python dict literal
(`--optim={'lr': 0.01, 'momentum': 0.9}`). The file, when present, wins: it keeps the types.

The trainer's parameters are flat, so a group's leaves are taken under their own names, by the
trainer's own `flatten_groups` (the one flattening; `resolve` uses it too).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kmnist.trainer.params import PARAMS, ConfigError, flatten_groups

PARAM_PATH_ENV = "WANDB_SWEEP_PARAM_PATH"


def read_param_file(path: str | Path) -> dict[str, Any]:
    """{name: value} from W&B's param file (`wandb_version` and `_wandb` left out)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read W&B's sweep parameters at {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"W&B's sweep parameters at {path}: expected a mapping")
    return {
        str(name): entry.get("value") if isinstance(entry, dict) else entry
        for name, entry in data.items()
        if name != "wandb_version" and not str(name).startswith("_")
    }


def sweep_params(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The run's parameters from WANDB_SWEEP_PARAM_PATH, or None outside a W&B sweep run."""
    environ = os.environ if environ is None else environ
    path = environ.get(PARAM_PATH_ENV)
    if not path or not Path(path).is_file():
        return None
    return read_param_file(path)


def split_args(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """(parameters, other arguments) from a W&B agent command line.

    Parameters are the trainer's names and nested groups; anything else (the train command's
    own options, or a misspelt name the train command will reject) is returned untouched.
    """
    params: dict[str, Any] = {}
    rest: list[str] = []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        name, eq, value = token[2:].partition("=") if token.startswith("--") else ("", "", "")
        key = name.replace("-", "_")
        group = _literal_dict(value) if eq else None
        if key in PARAMS or group is not None:
            if not eq:  # `--name value`, or a bare boolean flag (args_no_boolean_flags)
                value = tokens.pop(0) if tokens and not tokens[0].startswith("--") else "True"
            params[key] = group if group is not None else value
        else:
            rest.append(token)
    return params, rest


def _literal_dict(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = ast.literal_eval(text)  # a literal only: never code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def model_family(config: Mapping[str, Any]) -> str:
    """The model a config trains, nested in a group or not: a run's group, job type and tag."""
    try:
        model = flatten_groups(config).get("model", PARAMS["model"].default)
    except ConfigError:
        model = PARAMS["model"].default
    return str(model)


def agent_params(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(flat trainer parameters, other arguments): the param file over the command line."""
    params, rest = split_args(argv)
    params.update(sweep_params(environ) or {})
    return flatten_groups(params), rest


def as_arg(name: str, value: Any) -> str:
    """`--name=value` as the train command parses it back (booleans as True/False)."""
    return f"--{name}={value}"
