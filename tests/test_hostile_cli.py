"""Hostile text and numbers given to the command line, and the files its results commands write.

User text (sweep ids, paths, parameter values, failure reasons) is printed as given, never read
as rich markup; numbers that are not finite, or absurdly large counts, are one line and exit 2;
the files `report` and `best --out` write appear whole or not at all; tables keep one row per
trial whatever a reason holds. Each case runs the real command on real files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error
from engine_util import KNN_SWEEP, cli, sweep_file

from kmnist.cli import main

# Each is rich markup or an emoji code: a MarkupError, a swallowed tag, or a changed text.
MARKUP = ["[/x]", "[red]zz", "[bold]b[/bold]", ":smile:", "[link=http://e.x]y"]


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The real click app in this process (option parsing is all these cases need): as fast
    as a function call, read as a finished process."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash: the traceback a user would see
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


# -- 1. rich markup in user text ----------------------------------------------------------------
@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_a_sweep_id_is_printed_as_given(tmp_path: Path, text: str) -> None:
    journal = str(tmp_path / "sweeps.journal")
    for command in ("status", "leaderboard", "stop", "ensemble"):
        assert_one_line_error(cli(command, text, "--storage", journal), text)


def test_markup_in_paths_and_values_is_printed_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "m[" / "x]"  # the path reads m[/x]: a closing tag
    folder.mkdir(parents=True)
    journal = str(folder / "[red]sweeps.journal")
    path = sweep_file(folder, KNN_SWEEP, name="[bold]knn")
    made = cli("create", str(path), "--backend", "optuna", "--storage", journal)
    assert made.returncode == 0, made.stderr
    assert "m[/x]/[red]sweeps.journal" in made.stderr, made.stderr
    sweep_id = made.stdout.strip()
    listed = cli("ls", "--storage", journal)
    assert listed.returncode == 0 and sweep_id in listed.stdout, listed.stderr
    out = folder / ":smile:[/]"
    written = cli("report", sweep_id, "--storage", journal, "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert str(out / f"{sweep_id}.html") in written.stdout.replace("\n", "")
    assert_one_line_error(cli("status", "nope", "--storage", journal), journal)
    assert_one_line_error(cli("validate", str(folder / "[red]none.yaml")), "x]/[red]none.yaml")
    assert_one_line_error(invoke("train", "--model=[/x]:smile:"), "[/x]:smile:")


# -- 2. numbers that are not finite, and counts past any use ---------------------------------------
NOT_FINITE = ["nan", "inf", "-inf", "1e400", "-1"]
NUMBER_OPTIONS = [
    ["sync", "s", "--dry-run", "--timeout"],
    ["data", "info", "--val-fraction"],
    ["data", "info", "--split-seed"],
    ["agent", "s", "--count"],
    ["agent", "s", "--threads"],
    ["agent", "s", "--max-failures"],
    ["agent", "s", "--keep-artifacts"],
    ["agent", "s", "--gpu-share"],
    ["leaderboard", "s", "--top"],
    ["ensemble", "s", "--top"],
    ["run", "f.yaml", "--agents"],
    ["launch", "s", "--replicas"],
    ["create", "f.yaml", "--bayes-startup"],
]


@pytest.mark.parametrize("words", NUMBER_OPTIONS, ids=lambda w: f"{w[0]} {w[-1]}")
def test_numbers_that_are_not_finite_are_one_line(words: Sequence[str]) -> None:
    for value in NOT_FINITE:
        assert_one_line_error(invoke(*words, value), words[-1], "--help")


@pytest.mark.parametrize(
    "words",
    [
        ["run", "f.yaml", "--agents"],
        ["launch", "s", "--replicas"],
        ["agent", "s", "--gpu-share"],
        ["agent", "s", "--threads"],
    ],
    ids=lambda w: w[-1],
)
def test_a_count_that_would_fork_without_end_is_one_line(words: Sequence[str]) -> None:
    assert_one_line_error(invoke(*words, str(10**20)), words[-1], "1024")


def test_sync_timeout_nan_is_one_line_from_the_shell() -> None:
    assert_one_line_error(cli("sync", "s", "--timeout", "nan"), "--timeout", "nan")
