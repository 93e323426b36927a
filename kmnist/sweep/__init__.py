"""The W&B sweep spec: read, validate, sample, enumerate, early-stop; pure, no engine needed.

`load(path)` gives a `SweepSpec` or raises `SweepFileError` (a UserError: one line, exit 2).
No engine is imported here: the offline engine's translation is `kmnist.backends.optuna.bridge`.
"""

from __future__ import annotations

from pathlib import Path

from kmnist.errors import UserError
from kmnist.sweep.source import Problem
from kmnist.sweep.spec import SweepSpec
from kmnist.sweep.summary import summary
from kmnist.sweep.validate import check_file


class SweepFileError(UserError):
    """A sweep file with problems; the message is the first, with a count of the rest."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename, self.problems = filename, problems
        more = len(problems) - 1
        tail = f" (and {more} more: run `kmnist-sweep validate {filename}`)" if more else ""
        super().__init__(problems[0].render(filename) + tail)


def load(path: str | Path) -> SweepSpec:
    spec, problems = check_file(Path(path))
    if problems or spec is None:
        raise SweepFileError(str(path), problems)
    return spec


__all__ = ["Problem", "SweepFileError", "SweepSpec", "check_file", "load", "summary"]
