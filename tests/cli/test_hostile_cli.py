"""Hostile text and numbers given to the command line, and the files its results commands write.

User text (sweep ids, paths, parameter values, failure reasons) is printed as given, never read
as rich markup; numbers that are not finite, or absurdly large counts, are one line and exit 2;
the files `report` and `best --out` write appear whole or not at all; tables keep one row per
trial whatever a reason holds. Each case runs the real command on real files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from subprocess import PIPE

import pytest
from click.testing import CliRunner
from engine_util import (
    CLI,
    KNN_SWEEP,
    assert_one_line_error,
    cli,
    create,
    sweep_file,
    tmpfs,
    wait_for,
)

from kmnist.backends import open_control
from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.cli import main

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

# Each is rich markup or an emoji code: a MarkupError, a swallowed tag, or a changed text.
MARKUP = ["[/x]", "[red]zz", "[bold]b[/bold]", ":smile:", "[link=http://e.x]y"]
QUIET = ("--quiet", "--threads", "1", "--wandb", "off")


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The real click app in this process (option parsing is all these cases need): as fast
    as a function call, read as a finished process."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash: the traceback a user would see
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


# -- 1. rich markup in user text -------------------------------------------------------------------
@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_a_sweep_id_is_printed_as_given(hostile: tuple[str, str], text: str) -> None:
    _, journal = hostile
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


# -- a sweep with hostile failure reasons and a nested parameter group -----------------------------
# Each splits a naive table: a pipe, line breaks, HTML, an escaped pipe, markup.
REASONS = ["a | b", "line 1\nline 2\r\nline 3", "<script>x</script> &amp;", "back\\|slash", "[/x]"]
NESTED_KNN = {
    "name": "knn-nested",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 2 + len(REASONS),
    "parameters": {
        "model": {"value": "knn"},
        "train_size": {"value": 1000},
        "val_fraction": {"value": 0.05},
        "grp": {"parameters": {"k": {"values": [1, 3]}, "weights": {"value": "distance"}}},
    },
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, kmnist_dir: Path) -> tuple[str, str]:
    """(sweep id, journal): two kNN trials run by a real agent (artifacts kept), then one
    failed trial per hostile reason, recorded as an agent records a crash."""
    folder = tmp_path_factory.mktemp("hostile")
    journal = str(folder / "sweeps.journal")
    sweep_id = create(sweep_file(folder, NESTED_KNN), journal)
    agent = cli("agent", sweep_id, "--storage", journal, "--count", "2", *QUIET)
    assert agent.returncode == 0, agent.stderr
    sweep = OptunaSweep(sweep_id, journal)
    for reason in REASONS:
        sweep.finish(sweep.next_trial(), "failed", {}, [], reason)
    sweep.close()
    return sweep_id, journal


# -- 7. tables keep one row per trial --------------------------------------------------------------
def markdown_cells(line: str) -> list[str]:
    """A GitHub table row's cells: a pipe ends a cell unless a backslash escapes it."""
    cells, cell, chars = [], "", iter(line.strip()[1:-1])
    for char in chars:
        if char == "\\":
            cell += char + next(chars, "")
        elif char == "|":
            cells, cell = [*cells, cell], ""
        else:
            cell += char
    return [*cells, cell]


def test_markdown_leaderboard_keeps_one_row_per_trial(hostile: tuple[str, str]) -> None:
    sweep_id, journal = hostile
    done = cli("leaderboard", sweep_id, "--storage", journal, "--format", "markdown")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 + 2 + len(REASONS)  # header, rule, a line per trial
    width = len(markdown_cells(lines[0]))
    assert all(len(markdown_cells(line)) == width for line in lines[2:])
    reasons = [markdown_cells(line)[-1].strip() for line in lines[-len(REASONS) :]]
    assert "a \\| b" in reasons and "line 1<br>line 2<br>line 3" in reasons
    assert "back\\\\\\|slash" in reasons


class _Table(HTMLParser):
    """The first table of a page: its rows, each a list of cell texts (<br> read as \\n)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.depth, self.done, self.cell = 0, False, None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.done:
            return
        self.depth += tag == "table"
        if self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = ""
        elif self.cell is not None and tag == "br":
            self.cell += "\n"

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None
        elif tag == "table" and self.depth:
            self.depth, self.done = 0, True

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def test_report_table_keeps_one_row_per_trial_and_escapes_html(
    hostile: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = hostile
    done = cli("report", sweep_id, "--storage", journal, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / f"{sweep_id}.html").read_text(encoding="utf-8")
    assert "<script>x</script>" not in page
    table = _Table()
    table.feed(page)
    header, *rows = table.rows
    assert len(rows) == 2 + len(REASONS)
    assert all(len(row) == len(header) for row in rows)
    shown = {row[header.index("reason")] for row in rows}
    assert {r.replace("\r\n", "\n") for r in REASONS} <= shown


def test_csv_and_rich_leaderboards_keep_every_reason(hostile: tuple[str, str]) -> None:
    sweep_id, journal = hostile
    done = cli("leaderboard", sweep_id, "--storage", journal, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout, newline="")))
    # (text mode read \r\n back as \n)
    assert {r.replace("\r\n", "\n") for r in REASONS} <= {row["reason"] for row in rows}
    table = cli("leaderboard", sweep_id, "--storage", journal)
    assert table.returncode == 0 and "[/x]" in table.stdout, table.stderr


# -- 5. the export's retrain command runs as written -----------------------------------------------
def test_best_export_retrain_command_is_accepted_by_train(
    hostile: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = hostile
    out = tmp_path / "model"
    done = cli("best", sweep_id, "--storage", journal, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    winner = json.loads(done.stdout)
    # what the trainer trained: flat, the group's parameters under their own names
    assert "grp" not in winner["config"] and winner["config"]["weights"] == "distance"
    readme = (out / "README.md").read_text(encoding="utf-8")
    command = readme.split("```bash\n", 1)[1].split("\n```", 1)[0]
    program, train, *words = shlex.split(command)
    assert (program, train) == ("kmnist-sweep", "train")
    assert not any(word.startswith("--grp") for word in words)
    again = cli("train", *words, "--json")
    assert again.returncode == 0, again.stderr
    config = json.loads(again.stdout)["config"]
    assert config["k"] == winner["config"]["k"] and config["weights"] == "distance"


# -- 4. results files appear whole or not at all ---------------------------------------------------
def file_limit(size: int) -> Callable[[], None]:
    """preexec_fn: no file may grow past `size` bytes (a disk that fills up there)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_report_that_cannot_be_written_keeps_the_earlier_one(
    hostile: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = hostile
    first = cli("report", sweep_id, "--storage", journal, "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    page = tmp_path / f"{sweep_id}.html"
    before = page.read_bytes()
    full = cli(
        *("report", sweep_id, "--storage", journal, "--out", str(tmp_path)),
        preexec_fn=file_limit(64 * 1024),  # plotly.js alone is megabytes
    )
    assert_one_line_error(full, f"cannot write the report {page}", "File too large", "kept")
    assert page.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [page.name]  # no temporary left


def test_an_export_that_cannot_be_written_leaves_nothing(
    hostile: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = hostile
    out = tmp_path / "model"
    proc = cli(
        *("best", sweep_id, "--storage", journal, "--out", str(out)),
        preexec_fn=file_limit(512),  # probs.npz does not fit
    )
    assert_one_line_error(proc, f"cannot write {out}", "File too large")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


# -- 6. a sweep id is a name, not a path -----------------------------------------------------------
@pytest.mark.parametrize("sweep_id", [".", "..", "../x", "/abs", "", "a/../b", "x/.."])
def test_sync_refuses_a_path_for_a_sweep_id(tmp_path: Path, sweep_id: str) -> None:
    # A run where `sync .` would look (WANDB_DIR/./wandb): it must not be listed.
    plant = tmp_path / "wandb" / "offline-run-20240101_000000-abcd1234"
    plant.mkdir(parents=True)
    (plant / "run-abcd1234.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    for args in (["sync", sweep_id, "--dry-run"], ["sync", sweep_id]):
        proc = cli(*args, env={**os.environ, "WANDB_DIR": str(tmp_path)})
        assert_one_line_error(proc, repr(sweep_id), "not a sweep id")
        assert proc.stdout == ""


# -- 3. a full WANDB_DIR -------------------------------------------------------------------------
WANDB_OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
TINY_CNN = ["--model=cnn", "--train_size=100", "--val_fraction=0.01", "--batch_size=100"]
TINY_CNN += ["--l1_size=2", "--l2_size=2", "--fc1_size=4"]


def fill(folder: Path) -> None:
    """Take every free block of `folder`'s disk, as another program would."""
    with (folder / "filler").open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "full", "64k") as folder:
        fill(folder)
        yield folder


def with_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **WANDB_OFFLINE, **extra}


def test_train_wandb_into_a_full_folder_is_one_line_before_the_run(full_disk: Path) -> None:
    proc = cli("train", "--wandb", "--model=knn", env=with_env(WANDB_DIR=str(full_disk)))
    assert_one_line_error(proc, str(full_disk), "no space left", "WANDB_DIR")
    assert not (full_disk / "wandb").exists()  # no empty run for `sync` to find


def test_agent_wandb_into_a_full_folder_takes_no_trial(full_disk: Path, tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)
    env = with_env(WANDB_DIR=str(full_disk))
    proc = cli("agent", sweep_id, "--storage", journal, "--quiet", "--wandb", "offline", env=env)
    assert_one_line_error(proc, str(full_disk / sweep_id), "no space left")
    assert open_control(sweep_id, journal).trials() == []


def test_a_run_cut_short_by_a_disk_that_fills_is_one_line_exit_1(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "2m") as folder:
        env = with_env(WANDB_DIR=str(folder))
        command = [*CLI, "train", "--wandb", *TINY_CNN, "--epochs=5"]
        proc = subprocess.Popen(command, env=env, stdout=PIPE, stderr=PIPE, text=True)
        try:  # the disk fills once the run has started, as the epochs are logged
            wait_for(lambda: list(folder.glob("wandb/*/*.wandb")) or proc.poll(), 120, "a run")
            fill(folder)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        done = subprocess.CompletedProcess(command, proc.returncode, out, err)
        line = assert_one_line_error(done, str(folder / "wandb"), "no space left", code=1)
        assert "cut short" in line or "removed" in line
        assert "test/accuracy" in out  # the result itself is not lost


def test_sync_leaves_out_runs_cut_short(tmp_path: Path) -> None:
    sweep_id = "knn-cut-abc123"  # the folder an agent of that sweep writes its runs to
    written = cli(
        "train",
        "--wandb",
        "--model=knn",
        "--train_size=1000",
        "--val_fraction=0.05",
        env=with_env(WANDB_DIR=str(tmp_path / sweep_id)),
    )
    assert written.returncode == 0, written.stderr
    (whole,) = (tmp_path / sweep_id / "wandb").glob("offline-run-*")
    cut = whole.with_name(whole.name + "-cut")
    shutil.copytree(whole, cut)
    (cut_file,) = cut.glob("*.wandb")
    cut_file.write_bytes(cut_file.read_bytes()[:-40])  # the run's last records never written
    env = with_env(WANDB_DIR=str(tmp_path))
    listed = cli("sync", sweep_id, "--dry-run", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [str(whole)]
    assert "left out 1 offline run(s) cut short" in listed.stderr and str(cut) in listed.stderr
    (whole_file,) = whole.glob("*.wandb")
    whole_file.write_bytes(b"")  # a 0-byte run, as a full disk leaves
    assert_one_line_error(cli("sync", sweep_id, "--dry-run", env=env), "2 cut short", sweep_id)


def test_a_wandb_dir_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    # W&B itself would write the run into the system's temp dir instead, where `sync` never looks.
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    proc = cli("train", "--wandb", "--model=knn", env=with_env(WANDB_DIR=str(a_file)))
    assert_one_line_error(proc, f"cannot write W&B runs in {a_file}", "WANDB_DIR")
