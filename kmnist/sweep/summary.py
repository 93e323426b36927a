"""One line about a valid sweep: method, metric, parameters, grid size, brackets, engine notes."""

from __future__ import annotations

import math

from kmnist.sweep import distributions, grid
from kmnist.sweep.engines import notes
from kmnist.sweep.spec import Categorical, Constant, SweepSpec
from kmnist.sweep.text import is_integer


def summary(spec: SweepSpec) -> str:
    """One line: method, metric, parameter count, grid size or continuous, hyperband brackets."""
    leaves_ = list(spec.leaves())
    searched = sum(not isinstance(p, Constant) for _, p in leaves_)
    shown = ", ".join(f"{name} ({goal})" for name, goal in spec.objectives) or "no metric"
    metric = f"metrics {shown}" if len(spec.objectives) > 1 else f"metric {shown}"
    if all(grid.is_discrete(p) for _, p in leaves_):
        space = f"{grid.shown(grid.size(spec.parameters))} points"
    else:
        space = "continuous"
    parts = [
        f"method {spec.method}",
        metric,
        f"{len(leaves_)} parameters ({searched} searched)",
        space,
    ]
    if spec.run_cap:
        parts.append(f"run_cap {spec.run_cap}")
    if spec.early_terminate:
        parts.append(_brackets_text(spec))
    if not spec.runs_project_trainer:
        parts.append(f"program {spec.program or ' '.join(spec.command or ())} (format checks only)")
    return ", ".join(parts + notes(spec))


def _brackets_text(spec: SweepSpec) -> str:
    assert spec.early_terminate is not None
    bands = spec.early_terminate.brackets()
    last = _most_epochs(spec)
    within = [b for b in bands if last is None or b <= last] or bands[:1]
    more = len(within) < len(bands) and last is None
    shown = ", ".join(str(b) for b in within[:6]) + (", ..." if more or len(within) > 6 else "")
    mode = "strict" if spec.early_terminate.strict else "best-so-far"
    return f"hyperband brackets at reports {shown} (eta {spec.early_terminate.eta:g}, {mode})"


def _most_epochs(spec: SweepSpec) -> int | None:
    """The trainer's largest `epochs` in this sweep: brackets past it never apply."""
    param = spec.parameters.get("epochs") if spec.runs_project_trainer else None
    if isinstance(param, Constant) and is_integer(param.value):
        return int(param.value)
    if isinstance(param, Categorical) and all(is_integer(v) for v in param.values):
        return int(max(param.values))
    bounds = distributions.support(param) if param is not None else None
    return int(bounds[1]) if bounds and math.isfinite(bounds[1]) else None
