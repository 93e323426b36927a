"""A sweep as one self-contained HTML page: the leaderboard and Optuna's plotly figures.

Optimisation history, parallel coordinates, parameter importances, intermediate values (the
per-epoch curves hyperband prunes on) and the trial timeline. plotly.js is inlined once, so the
page opens offline.
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import optuna.visualization as vis

from kmnist.backends import TrialRecord
from kmnist.errors import UserError
from kmnist.results import leaderboard

# (title, plot, whether it takes target_name: the axis then reads "val/accuracy", not "Objective")
PLOTS: list[tuple[str, Callable[..., object], bool]] = [
    ("Optimisation history", vis.plot_optimization_history, True),
    ("Parallel coordinates", vis.plot_parallel_coordinate, True),
    ("Parameter importances", vis.plot_param_importances, True),
    ("Intermediate values (per epoch)", vis.plot_intermediate_values, False),
    ("Timeline", vis.plot_timeline, False),
]


def write(
    study: optuna.Study, records: list[TrialRecord], goal: str, metric: str, out_dir: Path
) -> Path:
    _writable_folder(out_dir)  # before the plots: they take seconds on a big sweep
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no trials yet" is said on the page
    sections, include_js = [], True
    for title, plot, named in PLOTS:
        kwargs = {"target_name": metric} if named else {}
        sections.append(f"<h2>{html.escape(title)}</h2>")
        try:
            with warnings.catch_warnings():  # optuna marks some plots experimental
                warnings.simplefilter("ignore")
                figure = plot(study, **kwargs)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ finished trials
            sections.append(f"<p class=note>Not available: {html.escape(str(exc))}</p>")
            continue
        sections.append(figure.to_html(full_html=False, include_plotlyjs=include_js))
        include_js = False  # plotly.js once, inline: the page needs no network
    table = leaderboard.render(records, goal, metric, "markdown")
    page = _PAGE.format(
        title=html.escape(study.study_name), table=_html_table(table), sections="\n".join(sections)
    )
    path = out_dir / f"{study.study_name}.html"
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    return path


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
</style></head>
<body><h1>Sweep {title}</h1>
<h2>Leaderboard</h2>
{table}
{sections}
</body></html>
"""
