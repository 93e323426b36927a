"""A sweep as one self-contained HTML page: the leaderboard and the engine's plotly figures.

The figures come from the sweep (`Sweep.plots`); plotly.js is inlined once, so the page opens
offline.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kmnist.backends import Plot, SweepInfo, TrialRecord
from kmnist.errors import UserError
from kmnist.results import atomic, leaderboard


def _ranked_by(info: SweepInfo) -> str:
    if not info.multi_objective:
        return info.metric
    names = ", ".join(name for name, _ in info.objectives)
    return f"Pareto rank over {names} (the front first), then {info.metric},"


def write(
    info: SweepInfo,
    records: Sequence[TrialRecord],
    plots: Sequence[Plot],
    out_dir: Path,
    extras: Sequence[Plot | str] = (),
) -> Path:
    """The page: the leaderboard, the engine's plots, then `extras` (more figures, or ready
    HTML such as the best trial's pictures). Written whole or not at all: a report already at
    that path stays as it was if this one cannot be written."""
    _writable_folder(out_dir)  # before the plots: they take seconds on a big sweep
    page = _PAGE.format(
        title=html.escape(info.sweep_id),
        table=_html_table(leaderboard.rows(records, info.goal, info.metric, info.objectives)),
        ranked_by=html.escape(_ranked_by(info)),
        sections=_sections([*plots, *extras]),
    )
    path = out_dir / f"{info.sweep_id}.html"
    try:
        atomic.write_text(path, page)
    except OSError as exc:
        raise UserError(
            f"cannot write the report {path}: {exc.strerror or exc}; any earlier report there "
            "is kept as it was (free space, or give --out another folder)"
        ) from None
    return path


def _sections(plots: Sequence[Plot | str]) -> str:
    sections, include_js = [], True
    for plot in plots:
        if isinstance(plot, str):
            sections.append(plot)
            continue
        sections.append(f"<h2>{html.escape(plot.title)}</h2>")
        if plot.figure is None:
            sections.append(f"<p class=note>Not available: {html.escape(plot.missing)}</p>")
            continue
        sections.append(plot.figure.to_html(full_html=False, include_plotlyjs=include_js))
        include_js = False  # plotly.js once, inline: the page needs no network
    return "\n".join(sections)


def _writable_folder(out_dir: Path) -> None:
    """UserError unless `out_dir` is, or can be made, a folder this process can write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"report folder {out_dir} is a file: give --out a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot make the report folder {out_dir}: {exc.strerror or exc}; "
            "give --out a folder you can write"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write into the report folder {out_dir}: permission denied; "
            "give --out a folder you can write"
        )


def _html_table(rows: Sequence[dict[str, Any]]) -> str:
    """The leaderboard's rows as an HTML table, built from the values themselves (not from
    a text rendering a reason's `|` or line break could split)."""
    if not rows:
        return "<p>No trials yet.</p>"
    head = "".join(f"<th>{_html_cell(key)}</th>" for key in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_html_cell(v)}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_cell(value: Any) -> str:
    """Escaped, each line break kept as <br>."""
    return "<br>".join(html.escape(line) for line in leaderboard.shown(value).splitlines())


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }}
th {{ background: #f3f3f3; }} .note {{ color: #777; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 0.6rem; }}
figure {{ margin: 0; font-size: 0.75rem; text-align: center; width: 7.5rem; }}
figure img {{ image-rendering: pixelated; border: 1px solid #ccc; }}
</style></head>
<body><h1>Sweep {title}</h1>
<h2>Leaderboard</h2>
<p class=note>Trials are ranked by {ranked_by} on the validation split carved from the 60k training
images; test/accuracy is scored once per trial and never used to choose. KMNIST's 10k test set is
harder than a split of its training set: expect test about 1.3 points below validation.</p>
{table}
{sections}
</body></html>
"""
