"""Leaderboard formats and the HTML report, read from a real journal-file study."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from kmnist.backends import open_control
from kmnist.backends.optuna.backend import OptunaSweep, create_sweep
from kmnist.sweep.source import parse
from kmnist.sweep.validate import check_source

SWEEP = """
method: grid
metric: {name: val/accuracy, goal: GOAL}
parameters:
  model: {value: knn}
  k: {values: [1, 2, 3, 4]}
"""


def _sweep(tmp_path: Path, goal: str) -> tuple[str, str]:
    """A study of four finished trials: three completed (value 1/k), one failed."""
    url = str(tmp_path / "sweeps.journal")
    text = SWEEP.replace("GOAL", goal)
    spec, problems = check_source(parse(text))
    assert spec is not None, problems
    sweep_id = create_sweep(text, spec, "report-test", url)
    sweep = OptunaSweep(sweep_id, url)
    for _ in range(4):
        ticket = sweep.next_trial()
        k = ticket.config["k"]
        if k == 4:
            sweep.finish(ticket, "failed", {}, [], "loss is nan")
            continue
        metrics = {"val/accuracy": 1 / k, "test/accuracy": 0.5 / k}
        sweep.report(ticket, 1, metrics)
        sweep.finish(ticket, "completed", metrics, [metrics])
    return sweep_id, url


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kmnist-sweep", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("goal,best_k", [("maximize", 1), ("minimize", 3)])
def test_leaderboard_ranks_by_goal_and_puts_failures_last(
    tmp_path: Path, goal: str, best_k: int
) -> None:
    sweep_id, url = _sweep(tmp_path, goal)
    proc = _cli("leaderboard", sweep_id, "--storage", url, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, None]
    assert rows[0]["k"] == best_k
    assert rows[-1]["state"] == "failed" and rows[-1]["reason"] == "loss is nan"
    assert rows[0]["test/accuracy"] == pytest.approx(0.5 / best_k)


def test_csv_markdown_and_table_show_the_same_trials(tmp_path: Path) -> None:
    sweep_id, url = _sweep(tmp_path, "maximize")
    as_csv = _cli("leaderboard", sweep_id, "--storage", url, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert [row["k"] for row in rows] == ["1", "2", "3", "4"]
    markdown = _cli("leaderboard", sweep_id, "--storage", url, "--format", "markdown").stdout
    assert markdown.splitlines()[0].startswith("| rank | trial | model | k |")
    assert len(markdown.strip().splitlines()) == 2 + 4
    top = _cli("leaderboard", sweep_id, "--storage", url, "--top", "2").stdout
    assert "completed" in top and "failed" not in top


def test_report_is_one_self_contained_html_page(tmp_path: Path) -> None:
    sweep_id, url = _sweep(tmp_path, "maximize")
    proc = _cli("report", sweep_id, "--storage", url, "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "out" / f"{sweep_id}.html").read_text()
    for title in (
        "Leaderboard",
        "Optimisation history",
        "Parallel coordinates",
        "Parameter importances",
        "Intermediate values",
    ):
        assert f"<h2>{title}" in page
    assert page.count("<tr>") == 1 + 4  # header and four trials
    assert 'src="https://cdn.plot.ly' not in page and "Plotly.newPlot" in page  # inlined
    assert page.count("plotly.js v") == 1


def test_unknown_sweep_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _cli("leaderboard", "nope-123456", "--storage", str(tmp_path / "x.journal"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no sweep 'nope-123456'" in proc.stderr


def test_progress_counts_best_and_eta(tmp_path: Path) -> None:
    # The real study above (3 completed, 1 failed), then the ETA's arithmetic on it: 6 trials
    # capped, 3 done at their mean duration, 2 agents alive, nothing running.
    from dataclasses import replace

    from kmnist.results.progress import progress

    sweep_id, url = _sweep(tmp_path, "maximize")
    sweep = open_control(sweep_id, url)
    records, info = sweep.trials(), sweep.info()
    assert (info.sweep_id, info.method, info.metric, info.goal) == (
        sweep_id,
        "grid",
        "val/accuracy",
        "maximize",
    )
    # every grid point has run: finished, as W&B shows it, once the last result is in
    assert (info.state, info.run_cap, info.agents_alive) == ("finished", None, 0)
    now = progress(records, info)
    assert now.counts == {"completed": 3, "pruned": 0, "running": 0, "failed": 1}
    assert now.best is not None and now.best.config["k"] == 1 and now.eta_minutes is None
    mean = sum(r.duration for r in records if r.state == "completed") / 3
    eta = progress(records, replace(info, run_cap=6, agents_alive=2)).eta_minutes
    assert eta == pytest.approx(mean * (3 / 2 + 0.5) / 60)
