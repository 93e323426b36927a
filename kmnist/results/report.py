"""A sweep as one self-contained HTML page: the leaderboard and the engine's plotly figures.

The figures come from the sweep (`Sweep.plots`); plotly.js is inlined once, so the page opens
offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from kmnist.backends import Plot, SweepInfo, TrialRecord
from kmnist.results import leaderboard


def write(
    info: SweepInfo, records: Sequence[TrialRecord], plots: Sequence[Plot], out_dir: Path
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    table = leaderboard.render(records, info.goal, info.metric, "markdown")
    page = _PAGE.format(
        title=html.escape(info.sweep_id), table=_html_table(table), sections=_sections(plots)
    )
    path = out_dir / f"{info.sweep_id}.html"
    path.write_text(page, encoding="utf-8")
    return path


def _sections(plots: Sequence[Plot]) -> str:
    sections, include_js = [], True
    for plot in plots:
        sections.append(f"<h2>{html.escape(plot.title)}</h2>")
        if plot.figure is None:
            sections.append(f"<p class=note>Not available: {html.escape(plot.missing)}</p>")
            continue
        sections.append(plot.figure.to_html(full_html=False, include_plotlyjs=include_js))
        include_js = False  # plotly.js once, inline: the page needs no network
    return "\n".join(sections)


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
</style></head>
<body><h1>Sweep {title}</h1>
<h2>Leaderboard</h2>
{table}
{sections}
</body></html>
"""
