"""A sweep as one self-contained HTML page: the leaderboard and the engine's plotly figures.

The figures come from the sweep (`Sweep.plots`); plotly.js is inlined once, so the page opens
offline.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from kmnist.backends import Plot, SweepInfo, TrialRecord
from kmnist.errors import UserError
from kmnist.results import leaderboard


def write(
    info: SweepInfo,
    records: Sequence[TrialRecord],
    plots: Sequence[Plot],
    out_dir: Path,
    extras: Sequence[Plot | str] = (),
) -> Path:
    """The page: the leaderboard, the engine's plots, then `extras` (more figures, or ready
    HTML such as the best trial's pictures)."""
    _writable_folder(out_dir)  # before the plots: they take seconds on a big sweep
    table = leaderboard.render(records, info.goal, info.metric, "markdown")
    page = _PAGE.format(
        title=html.escape(info.sweep_id),
        table=_html_table(table),
        metric=html.escape(info.metric),
        sections=_sections([*plots, *extras]),
    )
    path = out_dir / f"{info.sweep_id}.html"
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report {path}: {exc.strerror or exc}") from None
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


def _html_table(markdown: str) -> str:
    lines = [line for line in markdown.strip().splitlines() if not line.startswith("|---")]
    if len(lines) < 2:
        return "<p>No trials yet.</p>"
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
<p class=note>Trials are ranked by {metric} on the validation split carved from the 60k training
images; test/accuracy is scored once per trial and never used to choose. KMNIST's 10k test set is
harder than a split of its training set: expect test about 1.3 points below validation.</p>
{table}
{sections}
</body></html>
"""
