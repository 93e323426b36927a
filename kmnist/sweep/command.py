"""A sweep's `command` as W&B's agent reads it, for the offline engine to pass the same arguments.

W&B's agent (wandb 0.31, `wandb_agent.py` and `sdk/launch/sweeps/utils.py`) replaces each
`${envvar:NAME}` by the agent's $NAME (NAME itself when unset; only names of A-Z, 0-9 and _),
replaces a word that is exactly a macro by that macro's words (an unknown one by none), and
passes every other word as written. The project's entry point then takes `--name=value` (or
`--name value`) words naming trainer parameters as parameters, with the run's config, written
to the file at WANDB_SWEEP_PARAM_PATH, over them. `literal_parameters` is what the trainer gets
from the words written into `command`; the offline engine adds the trial's config over it.

`command_config` types those parameters once, when the sweep is created; a parameter whose value
word holds `${envvar:NAME}` is read by each agent from its own environment (`for_agent`), as
W&B's agent substitutes it when it starts a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kmnist.errors import UserError
from kmnist.sweep.spec import PROJECT_MODULE, PROJECT_PROGRAM, SweepSpec
from kmnist.trainer.params import PARAMS, ConfigError, coerce

DEFAULT = ("${env}", "${interpreter}", "${program}", "${args}")
ENVVAR = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")
# Words that start the entry point, and what may come before it when the offline agent stands in
# for them (it runs the trainer in-process: no interpreter options, no other program).
ENTRY = ("${program}", PROJECT_MODULE, PROJECT_PROGRAM, f"./{PROJECT_PROGRAM}")
LAUNCHER = ("${env}", "${interpreter}", "/usr/bin/env", "env", "python", "python3", "-m")


@dataclass(frozen=True)
class EntryWords:
    """The project command split at its entry point, envvars substituted."""

    launcher: list[str] = field(default_factory=list)  # before the entry point
    arguments: list[str] = field(default_factory=list)  # after it: what the entry reads


def with_environment(word: Any, environ: Mapping[str, str]) -> str:
    """`word` with each `${envvar:NAME}` replaced as W&B's agent does."""
    return ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), str(word))


def is_macro(word: str) -> bool:
    """A whole-word macro, which the agent replaces by its words (or none).

    Not a `${envvar:NAME}` word: the agent substitutes those first, and passes the result.
    """
    return word.startswith("${") and word.endswith("}") and not ENVVAR.search(word)


def entry_words(
    command: Sequence[Any] | None, environ: Mapping[str, str] | None = None
) -> EntryWords:
    """The words before and after the entry point; envvars substituted when `environ` is given."""
    given = command or DEFAULT
    words = [str(w) if environ is None else with_environment(w, environ) for w in given]
    for index, word in enumerate(words):
        if word in ENTRY:
            return EntryWords(words[:index], words[index + 1 :])
    return EntryWords(words, [])


def literal_parameters(arguments: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(trainer parameters written as words, the other non-macro words) of the entry's words.

    As the entry point reads them: `--name=value`, `--name value`, or a bare `--name` (True),
    for names in the trainer's table (dashes read as underscores); a later word wins.
    """
    params: dict[str, str] = {}
    others: list[str] = []
    words = [word for word in arguments if not is_macro(word)]
    while words:
        word = words.pop(0)
        name, eq, value = word[2:].partition("=") if word.startswith("--") else ("", "", "")
        key = name.replace("-", "_")
        if key not in PARAMS:
            others.append(word)
            continue
        if not eq:
            value = words.pop(0) if words and not words[0].startswith("--") else "True"
        params[key] = value
    return params, others


@dataclass(frozen=True)
class CommandConfig:
    """The trainer parameters a sweep's `command` writes: typed once, at create (`fixed`); or
    their value word, when it holds `${envvar:NAME}`, for each agent to read (`per_agent`)."""

    fixed: dict[str, Any] = field(default_factory=dict)
    per_agent: dict[str, str] = field(default_factory=dict)

    def for_agent(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The parameters as this agent passes them: its environment in the envvar words.

        UserError (one line) names the word, the variable and the value it gave."""
        config = dict(self.fixed)
        for name, word in self.per_agent.items():
            value = with_environment(word, environ)
            try:
                config[name] = _typed(name, value)
            except ConfigError as exc:
                names = ", ".join(f"${m}" for m in ENVVAR.findall(word))
                raise UserError(
                    f"command word --{name}={word} gives {value!r} with this agent's {names}: "
                    f"{exc}; set {names} for this agent"
                ) from None
        return config


def command_config(spec: SweepSpec) -> CommandConfig:
    """The trainer parameters written into a valid sweep's `command`, typed (validation has
    coerced each once already: this cannot fail on a file that passed it)."""
    if not spec.runs_project_trainer:
        return CommandConfig()
    written = literal_parameters(entry_words(spec.command).arguments)[0]
    per_agent = {name: word for name, word in written.items() if ENVVAR.search(word)}
    fixed = {name: _typed(name, word) for name, word in written.items() if name not in per_agent}
    return CommandConfig(fixed, per_agent)


def _typed(name: str, word: str) -> Any:
    """A parameter's word as the trainer reads it ("None", as W&B writes null: the default)."""
    return None if word == "None" else coerce(PARAMS[name], word)
