"""The leaderboard: trials ranked by the sweep metric, as a rich table, CSV, JSON or Markdown.

A trial's score is the metric's best value over its epochs for the sweep's goal (as W&B's engine
scores a run), so the column is named `best <metric>`. A multi-objective sweep's trials go by
Pareto rank (the non-dominated ones first), each objective in its own column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from kmnist.backends import TrialRecord
from kmnist.results import pareto
from kmnist.sweep.grid import flatten

FORMATS = ("table", "csv", "json", "markdown")
_FINISHED_ORDER = {"completed": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4}


def rank(
    records: Sequence[TrialRecord], goal: str, objectives: Sequence[tuple[str, str]] = ()
) -> list[TrialRecord]:
    """Completed trials by metric (best first), then pruned ones, running, waiting, failed.

    A pruned trial's value was measured after fewer epochs, so it never outranks a completed
    one: the best row is the study's best trial, as Optuna and optuna-dashboard show it. With
    several objectives, completed trials go by Pareto rank (the front first), then by the
    first objective.
    """
    sign = -1.0 if goal == "maximize" else 1.0
    fronts = pareto_ranks(records, objectives)

    def key(r: TrialRecord) -> tuple[int, bool, int, float, int]:
        unscored = r.value is None or r.state not in ("completed", "pruned")
        value = 0.0 if unscored else sign * r.value
        return _FINISHED_ORDER.get(r.state, 5), unscored, fronts.get(r.number, 0), value, r.number

    return sorted(records, key=key)


def pareto_ranks(
    records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]]
) -> dict[int, int]:
    """Trial number -> Pareto rank (1: the front), for the completed trials of a sweep with
    several objectives; empty for one objective."""
    if len(objectives) < 2:
        return {}
    done = [r for r in records if r.state == "completed" and r.values]
    found = pareto.ranks([r.values or [] for r in done], [goal for _, goal in objectives])
    return {r.number: level for r, level in zip(done, found, strict=True)}


def varying_keys(records: Sequence[TrialRecord]) -> list[str]:
    """Config keys (nested keys dotted) whose values differ between trials."""
    seen: dict[str, set[str]] = {}
    for r in records:
        for key, value in flatten(r.config).items():
            seen.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return [k for k, values in seen.items() if len(values) > 1]


def rows(
    records: Sequence[TrialRecord],
    goal: str,
    metric: str,
    objectives: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    ranked = rank(records, goal, objectives)
    fronts = pareto_ranks(records, objectives)
    keys = varying_keys(records)
    out = []
    for position, r in enumerate(ranked, 1):
        config = flatten(r.config)
        out.append(
            {
                "rank": position if r.state in ("completed", "pruned") else None,
                "trial": r.number,
                "model": config.get("model", ""),
                **{k: config.get(k) for k in keys if k != "model"},
                **_scores(r, metric, objectives, fronts),
                "test/accuracy": r.summary.get("test/accuracy"),
                "epochs": r.epochs,
                "seconds": round(r.duration, 1) if r.duration is not None else None,
                "state": r.state + (f" (retry of {r.retry_of})" if r.retry_of is not None else ""),
                "reason": r.reason,
            }
        )
    if not any(row["reason"] for row in out):  # a column only when some trial failed
        for row in out:
            del row["reason"]
    return out


def _scores(
    r: TrialRecord,
    metric: str,
    objectives: Sequence[tuple[str, str]],
    fronts: dict[int, int],
) -> dict[str, Any]:
    """One objective: its best value. Several: the Pareto rank, then each objective's value."""
    if len(objectives) < 2:
        return {f"best {metric}": r.value}
    values = r.values or [None] * len(objectives)
    named = {name: value for (name, _), value in zip(objectives, values, strict=True)}
    return {"pareto rank": fronts.get(r.number), **named}


def render(
    records: Sequence[TrialRecord],
    goal: str,
    metric: str,
    fmt: str,
    title: str = "",
    objectives: Sequence[tuple[str, str]] = (),
) -> Table | str:
    data = rows(records, goal, metric, objectives)
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(data[0]) if data else ["trial"])
        writer.writeheader()
        writer.writerows(data)
        return buffer.getvalue()
    if fmt == "markdown":
        return _markdown(data)
    return _table(data, title)


def shown(value: Any) -> str:
    """A value as a table cell shows it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown(data: list[dict[str, Any]]) -> str:
    if not data:
        return "_no trials yet_\n"
    header = list(data[0])
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(row[k]) for k in header) + " |" for row in data]
    return "\n".join(lines) + "\n"


def markdown_cell(value: Any) -> str:
    r"""A cell that cannot split its row or its table, whatever a failure reason or a value
    holds: `\` and `|` escaped (GitHub's tables end a cell at a pipe unless a backslash escapes
    it, so a reason's own `\|` must become `\\\|`), each line break as `<br>`."""
    text = shown(value).replace("\\", "\\\\").replace("|", "\\|")
    return "<br>".join(text.splitlines())


def _table(data: list[dict[str, Any]], title: str) -> Table:
    # Text, not str: ids, parameter values, metric names and reasons are user text, and a str
    # cell is read as rich markup by a console that has it on
    table = Table(title=Text(title) if title else None)
    if not data:
        table.add_column("no trials yet")
        return table
    for key in data[0]:
        justify = "left" if key in ("state", "reason") else "right"
        table.add_column(Text(key), justify=justify)
    for row in data:
        style = "dim" if row["state"].startswith("failed") else None
        table.add_row(*(Text(shown(v)) for v in row.values()), style=style)
    return table
