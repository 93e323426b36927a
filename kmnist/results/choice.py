"""Choosing one trial of a multi-objective sweep: a user's preference and constraints, since no
single best exists (`best --prefer val/accuracy --where 'parameters<100000'`)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kmnist.backends import TrialRecord
from kmnist.errors import UserError

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    name: str
    op: str
    bound: float

    def holds(self, record: TrialRecord) -> bool:
        value = record.summary.get(self.name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return _OPS[self.op](float(value), self.bound)


def constraint(text: str) -> Constraint:
    """`NAME<VALUE` (or <=, >, >=) as a Constraint; one line naming the text when it is not."""
    found = _CONSTRAINT.match(text)
    bound = _number(found.group(3)) if found else None
    if found is None or bound is None:
        raise UserError(
            f"--where {text!r}: expected NAME<VALUE, NAME<=VALUE, NAME>VALUE or NAME>=VALUE "
            "with a finite number, e.g. --where 'parameters<100000'"
        )
    return Constraint(found.group(1), found.group(2), bound)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def choose(
    records: Sequence[TrialRecord],
    objectives: Sequence[tuple[str, str]],
    prefer: str | None,
    constraints: Sequence[Constraint],
) -> TrialRecord:
    """The completed trial meeting every constraint that is best on `prefer` (an objective's
    name; the first objective when only constraints are given)."""
    goals = dict(objectives)
    name = prefer or objectives[0][0]
    if name not in goals:
        raise UserError(f"--prefer {name}: expected one of the objectives {', '.join(goals)}")
    done = [
        r
        for r in records
        if r.state == "completed" and isinstance(r.summary.get(name), float | int)
    ]
    kept = [r for r in done if all(c.holds(r) for c in constraints)]
    if not kept:
        shown = " and ".join(f"{c.name}{c.op}{c.bound:g}" for c in constraints)
        raise UserError(f"no completed trial has {shown or name}: loosen --where")
    sign = 1.0 if goals[name] == "maximize" else -1.0
    return max(kept, key=lambda r: (sign * float(r.summary[name]), -r.number))
