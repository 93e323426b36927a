"""Hostile input and faults, as an operator or an attacker would try them.

Each case runs the real command (`python -m kmnist.cli`) on real files and real storages (a
journal file; PostgreSQL at 127.0.0.1:5432) and asserts the exit code (2 for bad input, 1 for a
full disk), a single clear line on stderr, no traceback, and for faults that every record
written before the fault is still there afterwards. Permissions are tested as a process without
root's file privileges (setpriv drops CAP_DAC_OVERRIDE), full disks with a real RLIMIT_FSIZE
and, as root, a real tmpfs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from engine_util import (
    CLI,
    KNN_SWEEP,
    POSTGRES_URL,
    assert_one_line_error,
    create,
    open_storage,
    stored_trials,
    sweep_file,
    tmpfs,
    unprivileged,
    wait_for,
)
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState

from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.sweep import grid
from kmnist.sweep.source import MAX_BYTES, number_spelling, parse
from kmnist.sweep.validate import check_source

# The CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = [pytest.mark.usefixtures("kmnist_dir"), pytest.mark.e2e]

VALID = "method: random\nmetric: {name: val/accuracy, goal: maximize}\nparameters:\n"
KNN = VALID + "  model: {value: knn}\n  train_size: {value: 1000}\n"
QUIET = ("--quiet", "--threads", "1", "--wandb", "off")
# A CNN small enough for a fraction of a second per epoch, with epochs enough to be cut.
LONG_CNN: dict[str, Any] = {
    "name": "cnn-long",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 10,
    "parameters": {
        "model": {"value": "cnn"},
        "train_size": {"value": 100},
        "val_fraction": {"value": 0.01},
        "epochs": {"value": 100},
        "batch_size": {"value": 100},
        "l1_size": {"value": 2},
        "l2_size": {"value": 2},
        "fc1_size": {"value": 4},
        "lr": {"min": 0.001, "max": 0.01},
    },
}


def run(
    *args: str,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
        check=False,
    )


def assert_one_line_fault(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 1 (the environment failed, not the input), one line, no traceback."""
    return assert_one_line_error(proc, *fragments, code=1)


def file_limit(size: int) -> Callable[[], None]:
    """preexec_fn: no file may grow past `size` bytes (a disk that fills up there)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.fixture(scope="session")
def template_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A journal holding one kNN sweep, made once by `create`; tests get copies."""
    folder = tmp_path_factory.mktemp("template")
    journal = folder / "sweeps.journal"
    sweep = folder / "knn.yaml"
    sweep.write_text(f"name: knn\n{KNN}", encoding="utf-8")
    return journal, create(sweep, str(journal))


@pytest.fixture
def journal_with_sweep(tmp_path: Path, template_journal: tuple[Path, str]) -> tuple[Path, str]:
    """(journal, sweep id) in this test's folder, with the sweep file beside it as knn.yaml."""
    journal, sweep_id = template_journal
    shutil.copy(journal, tmp_path / journal.name)
    shutil.copy(journal.parent / "knn.yaml", tmp_path / "knn.yaml")
    return tmp_path / journal.name, sweep_id


def trials_of(journal: Path, sweep_id: str) -> list[tuple[int, str, Any]]:
    """(number, state, value) of every trial, read by Optuna alone."""
    return [(t.number, t.state.name, t.value) for t in stored_trials(str(journal), sweep_id)]


# -- sweep files -------------------------------------------------------------------------------
def _laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    return "\n".join(lines) + "\n" + KNN


HOSTILE_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "endless device": (lambda d: Path("/dev/zero"), "not a regular file"),
    "fifo": (lambda d: _fifo(d / "s.yaml"), "not a regular file"),
    "folder": (lambda d: _mkdir(d / "s.yaml"), "a folder, not a sweep file"),
    "5 MB file": (lambda d: _write(d, KNN + "# " + "x" * 5_000_000 + "\n"), "over the 256 KiB"),
    "billion laughs": (lambda d: _write(d, _laughs()), "aliases are expanded"),
    "alias loop": (lambda d: _write(d, "a: &a [1, *a]\n" + KNN), "inside the node it names"),
    "deep flow nesting": (lambda d: _write(d, KNN + "x: " + "[" * 100_000), "nested over 64"),
    "deep block nesting": (
        lambda d: _write(d, "".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "1\n"),
        "nested over 64",
    ),
    "5000-digit integer": (
        lambda d: _write(d, KNN + "  k: {value: " + "9" * 5000 + "}\n"),
        "far too large",
    ),
    "integer past 2^63": (
        lambda d: _write(d, KNN + f"  k: {{min: 1, max: {2**64}}}\n"),
        "out of range",
    ),
    "hex integer past 2^63": (
        lambda d: _write(d, KNN + "  k: {value: 0x" + "f" * 40 + "}\n"),
        "out of range",
    ),
    "not UTF-8": (lambda d: _write_bytes(d, b"method: random\n\xff\xfe\x00"), "not UTF-8"),
    "grid over 10^9 integers": (
        lambda d: _write(
            d, KNN.replace("random", "grid") + "  k: {min: 1, max: 1000000000}\nrun_cap: 10\n"
        ),
        "an engine can list",
    ),
    "grid of 78 million points": (
        lambda d: _write(
            d,
            KNN.replace("random", "grid")
            + "  k: {min: 1, max: 1000}\n  pca_components: {min: 1, max: 784}\n"
            + "  seed: {min: 0, max: 99}\nrun_cap: 10\n",
        ),
        "78,400,000 points",
    ),
    "grid with a tiny q": (
        lambda d: _write(
            d,
            "method: grid\nparameters:\n  x: {distribution: q_uniform, min: 0, max: 1.0e+300, "
            "q: 1.0e-300}\nrun_cap: 5\nprogram: other.py\n",
        ),
        "over 1e+18 points",
    ),
    "seed -1": (lambda d: _write(d, KNN + "  seed: {value: -1}\n"), "seed.value: expected an"),
    "seed past 4e9": (
        lambda d: _write(d, KNN + "  seed: {min: 0, max: 10000000000}\n"),
        "'seed' takes [0, 4e+09]",
    ),
    # Whatever validate accepts, the engine runs: a subset below one image per class is refused
    # in the file, whether a value, a listed value or a range that reaches it.
    "train_size 5": (
        lambda d: _write(d, VALID + "  model: {value: knn}\n  train_size: {value: 5}\n"),
        "train_size.value: expected an integer in [10, inf] or 0",
    ),
    "train_size values with 9": (
        lambda d: _write(d, VALID + "  train_size: {values: [0, 9, 100]}\n"),
        "values[1]: expected an integer in [10, inf] or 0",
    ),
    "train_size range from 0": (
        lambda d: _write(d, VALID + "  train_size: {min: 0, max: 5000}\n"),
        "reaches [0, 5000] but 'train_size' takes [10, inf] or 0",
    ),
    "run_cap 1e3": (lambda d: _write(d, KNN + "run_cap: 1e3\n"), "write 1000"),
    "run_cap 1.0e3": (lambda d: _write(d, KNN + "run_cap: 1.0e3\n"), "write 1000"),
    "lr min 1e-5": (
        lambda d: _write(d, KNN.replace("knn", "cnn") + "  lr: {min: 1e-5, max: 0.1}\n"),
        "write 1.0e-5",
    ),
    "target 1.5e3": (
        lambda d: _write(d, KNN.replace("goal: maximize", "goal: maximize, target: 1.5e3")),
        "write 1.5e+3",
    ),
}


def _write(folder: Path, text: str) -> Path:
    return _write_bytes(folder, text.encode("utf-8"))


def _write_bytes(folder: Path, data: bytes) -> Path:
    path = folder / "s.yaml"
    path.write_bytes(data)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # nobody writes: a reader that opens it blocking waits forever
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_sweep_file_is_one_line(tmp_path: Path, case: str) -> None:
    make, fragment = HOSTILE_FILES[case]
    path = make(tmp_path)
    started = time.monotonic()
    proc = run("validate", str(path), timeout=30)
    assert time.monotonic() - started < 10  # the interpreter's start is most of it
    line = assert_one_line_error(proc, fragment)
    assert line.startswith(f"{path}:")


@pytest.mark.parametrize("case", ["endless device", "billion laughs", "grid over 10^9 integers"])
def test_create_refuses_what_validate_refuses(tmp_path: Path, case: str) -> None:
    make, fragment = HOSTILE_FILES[case]
    journal = tmp_path / "sweeps.journal"
    proc = run("create", str(make(tmp_path)), "--backend", "optuna", "--storage", str(journal))
    assert_one_line_error(proc, fragment)
    assert not journal.exists()  # refused before any storage was opened


BOUND_CASES = {
    "billion laughs": _laughs(),
    "deep flow nesting": "[" * (MAX_BYTES - 1),
    "flow list at the size limit": "[" + "1," * (MAX_BYTES // 2 - 2) + "]",
    "mapping at the size limit": "".join(f"k{i}: {i}\n" for i in range(30_000))[:MAX_BYTES],
    "long strings at the size limit": "x: [" + ", ".join(["y" * 1000] * 250) + "]\n",
}


@pytest.mark.parametrize("case", list(BOUND_CASES))
def test_hostile_documents_cost_little_time_and_memory(case: str) -> None:
    text = BOUND_CASES[case]
    started = time.perf_counter()
    check_source(parse(text))
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        check_source(parse(text))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5, f"{case}: {elapsed:.2f} s"
    assert peak < 20e6, f"{case}: {peak / 1e6:.0f} MB"


@given(
    units=st.integers(0, 10**6),
    fraction=st.one_of(st.none(), st.integers(0, 10**6).map(str)),
    exponent=st.integers(-30, 30),
    signed=st.booleans(),
    whole=st.booleans(),
)
def test_number_advice_is_a_number_to_pyyaml(
    units: int, fraction: str | None, exponent: int, signed: bool, whole: bool
) -> None:
    mantissa = str(units) + ("" if fraction is None else f".{fraction}")
    text = f"{mantissa}e{'+' if signed and exponent >= 0 else ''}{exponent}"
    read = yaml.safe_load(text)
    advice = number_spelling(text, whole)
    if isinstance(read, float):
        return  # YAML already reads it: no advice is asked for
    assert advice is not None, text
    value = yaml.safe_load(advice)
    assert isinstance(value, float | int) and not isinstance(value, bool), (text, advice)
    assert value == pytest.approx(float(text)), (text, advice)


@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())))
def test_grid_tells_values_apart_as_their_yaml_text_does(values: list[Any]) -> None:
    def text(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return yaml.safe_dump(value, default_flow_style=True)

    fast = {grid._key(v) for v in values}
    assert len(fast) == len({text(v) for v in values})


# -- the command line, the data -----------------------------------------------------------------
TRAIN_CASES: dict[str, tuple[list[str], str]] = {
    "seed -1": (["--seed=-1"], "'seed'"),
    "seed past 2^64": (["--seed=" + "9" * 30], "'seed'"),
    "train_size below the classes": (["--train_size=5"], "[10, inf] or 0"),
    "a 5000-digit k": (["--k=" + "9" * 5000], "'k'"),
    "lr infinite": (["--model=cnn", "--lr=1e999"], "'lr'"),
    "val_fraction nan": (["--val_fraction=nan"], "'val_fraction'"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_hostile_train_arguments_are_one_line(case: str) -> None:
    extra, fragment = TRAIN_CASES[case]
    assert_one_line_error(run("train", "--model=knn", *extra), fragment)


def test_data_info_split_seed_is_bounded() -> None:
    assert_one_line_error(run("data", "info", "--split-seed", "-1"), "--split-seed")


def test_data_dir_env_naming_a_file(tmp_path: Path) -> None:
    file = tmp_path / "kmnist.npz"
    file.write_bytes(b"not a folder")
    proc = run("train", "--model=knn", env={"KMNIST_DATA_DIR": str(file)})
    assert_one_line_error(proc, f"KMNIST_DATA_DIR={file} is a file")


def test_data_dir_option_under_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    proc = run("data", "download", "--data-dir", str(file / "kmnist"))
    assert_one_line_error(proc, "cannot make the data folder")


def test_unreadable_data_file(tmp_path: Path, kmnist_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(kmnist_dir, data)
    (data / "kmnist-train-imgs.npz").chmod(0)
    proc = run("train", "--model=knn", "--data-dir", str(data), prefix=unprivileged())
    assert_one_line_error(proc, "cannot read", "kmnist-train-imgs.npz", "Permission denied")


# -- journal storages: torn, corrupt, unwritable ------------------------------------------------
@pytest.mark.parametrize("cut", [1, 40, "half", "line end only"])
def test_torn_last_record_is_repaired_and_nothing_else_lost(
    tmp_path: Path, cut: Any, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, first = journal_with_sweep
    before = journal.read_bytes()
    last = before.splitlines(keepends=True)[-1]
    n = {"half": len(last) // 2, "line end only": 1}.get(cut, cut)
    journal.write_bytes(before[:-n])  # the probe: cut the end off, then create twice
    sweep = tmp_path / "knn.yaml"
    for _ in range(2):
        proc = run("create", str(sweep), "--backend", "optuna", "--storage", str(journal))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "repaired" in line]
    assert not notes  # the second create found nothing to repair
    listed = run("ls", "--storage", str(journal))
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert first in listed.stdout and listed.stdout.count("knn-") == 3
    # Every record before the torn one is there, byte for byte; the torn one alone is gone.
    kept = before if cut == "line end only" else before[: -len(last)]
    assert journal.read_bytes().startswith(kept)


def test_torn_record_repair_note_is_one_line(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    torn = b'{"op_code":2,"worker_id":"w","study_id":0,"user_at'  # power loss mid-write
    with journal.open("ab") as f:
        f.write(torn)
    before = journal.read_bytes()
    proc = run("leaderboard", sweep_id, "--storage", str(journal))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"note: sweep storage {journal} ends in a torn record ({len(torn)} bytes, left by an "
        "interrupted write): it is ignored, and the first write to the journal drops it"
    ]
    assert journal.read_bytes() == before  # a command that only reads writes nothing
    proc = run("pause", sweep_id, "--storage", str(journal))  # the first write repairs
    assert proc.returncode == 0, proc.stderr
    assert (
        f"note: repaired sweep storage {journal}: dropped its torn last record ({len(torn)} "
        "bytes, left by an interrupted write); every record before it is intact"
    ) in proc.stderr.splitlines()
    assert (
        journal.read_bytes().startswith(before[: -len(torn)]) and torn not in journal.read_bytes()
    )


def test_zeros_left_by_a_power_loss_are_dropped(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    before = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(b"\0" * 4096)  # the size reached the disk, the data did not
    proc = run("status", sweep_id, "--storage", str(journal))
    assert proc.returncode == 0 and "ignored" in proc.stderr, proc.stderr
    assert journal.read_bytes() == before + b"\0" * 4096  # a reader writes nothing
    proc = run("pause", sweep_id, "--storage", str(journal))
    assert proc.returncode == 0 and "repaired" in proc.stderr, proc.stderr
    assert journal.read_bytes().startswith(before) and b"\0" not in journal.read_bytes()


def test_concurrent_writer_is_not_cut(tmp_path: Path, journal_with_sweep: tuple[Path, str]) -> None:
    """An append in progress (lock held, line unfinished) is waited for, not repaired away."""
    journal, sweep_id = journal_with_sweep
    record = json.dumps(
        {"op_code": 2, "worker_id": "slow", "study_id": 0, "user_attr": {"note": "x"}}
    ).encode()
    rest = record[20:] + b"\n"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from optuna.storages.journal import JournalFileOpenLock\n"
            f"lock = JournalFileOpenLock({str(journal)!r}); lock.acquire()\n"
            f"f = open({str(journal)!r}, 'ab', buffering=0); f.write({record[:20]!r})\n"
            "print('half', flush=True); time.sleep(2)\n"
            f"f.write({rest!r}); lock.release()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "half\n"
        proc = run("ls", "--storage", str(journal))
    finally:
        writer.wait(timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert journal.read_bytes().endswith(record + b"\n")
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(str(journal)))
    assert study.user_attrs["note"] == "x"


CORRUPT_LINES: dict[str, tuple[bytes, str]] = {
    "garbage": (b"this is not json\n", "not a JSON record"),
    "unknown record kind": (b'{"op_code": 99, "worker_id": "w"}\n', "op_code 99"),
    "not an object": (b"[1, 2, 3]\n", "not an Optuna journal record"),
    "a glued torn record": (
        b'{"op_code":2,"wor{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"a":1}}\n',
        "not a JSON record",
    ),
    "a field missing": (b'{"op_code": 4, "worker_id": "w"}\n', "cannot be replayed"),
    "a field of the wrong type": (
        b'{"op_code": 0, "worker_id": "w", "study_name": "x", "directions": ["up"]}\n',
        "cannot be replayed",
    ),
    "invalid UTF-8": (b'{"op_code": 2, "worker_id": "\xff"}\n', "not a JSON record"),
}


@pytest.mark.parametrize("case", list(CORRUPT_LINES))
@pytest.mark.parametrize("command", ["ls", "leaderboard", "create"])
def test_corrupt_record_in_the_middle_is_one_line_and_nothing_is_rewritten(
    tmp_path: Path, case: str, command: str, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    lines = journal.read_bytes().splitlines(keepends=True)
    bad, fragment = CORRUPT_LINES[case]
    broken = b"".join(lines[:3]) + bad + b"".join(lines[3:])
    journal.write_bytes(broken)
    args = {
        "ls": ["ls"],
        "leaderboard": ["leaderboard", sweep_id],
        "create": ["create", str(tmp_path / "knn.yaml"), "--backend", "optuna"],
    }[command]
    proc = run(*args, "--storage", str(journal))
    assert_one_line_error(proc, f"{journal}: line 4 is", fragment, "head -n 3")
    assert journal.read_bytes() == broken


def test_binary_garbage_storage(tmp_path: Path) -> None:
    journal = tmp_path / "sweeps.journal"
    journal.write_bytes(os.urandom(4096).replace(b"\n", b" ") + b"\n")
    assert_one_line_error(run("ls", "--storage", str(journal)), "line 1 is", "restore a backup")


def test_storage_that_is_a_folder(tmp_path: Path) -> None:
    assert_one_line_error(run("ls", "--storage", str(tmp_path)), "is a folder")


def test_storage_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = run("ls", "--storage", str(tmp_path / "file" / "sweeps.journal"))
    assert_one_line_error(proc, "cannot open sweep storage")


def test_read_only_journal_reads_but_refuses_writes(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    journal.chmod(0o444)
    before = journal.read_bytes()
    sweep = tmp_path / "knn.yaml"
    proc = run(
        "create",
        str(sweep),
        "--backend",
        "optuna",
        "--storage",
        str(journal),
        prefix=unprivileged(),
    )
    assert_one_line_error(proc, f"cannot write sweep storage {journal}", "Permission denied")
    proc = run("leaderboard", sweep_id, "--storage", str(journal), prefix=unprivileged())
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert journal.read_bytes() == before


def test_read_only_folder_refuses_the_journal_lock(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    tmp_path.chmod(0o555)
    try:
        proc = run("stop", sweep_id, "--storage", str(journal), prefix=unprivileged())
        assert_one_line_error(
            proc, f"cannot lock sweep storage {journal}.lock", "Permission denied"
        )
        listed = run("ls", "--storage", str(journal), prefix=unprivileged())
        assert listed.returncode == 0 and sweep_id in listed.stdout, listed.stderr
    finally:
        tmp_path.chmod(0o755)


def test_read_only_folder_without_a_journal(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    (tmp_path / "knn.yaml").write_text(KNN, encoding="utf-8")
    creating = ["create", str(tmp_path / "knn.yaml"), "--backend", "optuna"]
    proc = run(*creating, "--storage", str(folder / "sweeps.journal"), prefix=unprivileged())
    assert_one_line_error(proc, "cannot create sweep storage", "Permission denied")
    proc = run("ls", "--storage", str(folder / "sweeps.journal"), prefix=unprivileged())
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no sweep there yet
    assert list(folder.iterdir()) == []  # only `create` makes a journal


def test_torn_record_in_a_read_only_journal_is_read_around(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    with journal.open("ab") as f:
        f.write(b'{"op_code":2,"wor')
    journal.chmod(0o444)
    proc = run("leaderboard", sweep_id, "--storage", str(journal), prefix=unprivileged())
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "ignored" in proc.stderr


def test_read_only_trial_locks_stop_the_agent_before_any_trial(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    locks = Path(f"{journal}.locks")
    locks.mkdir(mode=0o555)
    before = journal.read_bytes()
    proc = run(
        "agent", sweep_id, "--storage", str(journal), *QUIET, prefix=unprivileged(),
    )  # fmt: skip
    assert_one_line_error(proc, f"cannot write trial lock files in {locks}")
    assert journal.read_bytes() == before  # no trial was asked for


@pytest.mark.slow
def test_lock_left_by_a_dead_writer_is_taken_over(
    tmp_path: Path, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, _ = journal_with_sweep
    Path(f"{journal}.lock").touch()  # a writer killed while it held the journal's lock
    sweep = tmp_path / "knn.yaml"
    proc = run("create", str(sweep), "--backend", "optuna", "--storage", str(journal))
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: took over {journal}.lock, left by a writer that died"]
    assert proc.stdout.strip() in run("ls", "--storage", str(journal)).stdout


# -- full disks ----------------------------------------------------------------------------------
def test_create_on_a_full_disk(tmp_path: Path, journal_with_sweep: tuple[Path, str]) -> None:
    journal, _ = journal_with_sweep
    before = journal.read_bytes()
    sweep = tmp_path / "knn.yaml"
    proc = run(
        "create", str(sweep), "--backend", "optuna", "--storage", str(journal),
        preexec_fn=file_limit(len(before) + 100),  # room for part of one record only
    )  # fmt: skip
    assert_one_line_fault(proc, "cannot write sweep storage", "File too large", "intact")
    assert journal.read_bytes() == before  # the part that fitted was taken back
    assert run("ls", "--storage", str(journal)).returncode == 0


def _full_disk_mid_trial(
    tmp_path: Path,
    journal: Path,
    reason: str,
    limit: Callable[[], dict[str, Any]] = dict,
    fill: Callable[[subprocess.Popen[str]], None] = lambda proc: None,
    free: Callable[[], None] = lambda: None,
) -> None:
    """A sweep with trials done; an agent whose disk fills mid-trial; nothing lost after.

    `limit` gives the agent's Popen arguments once the earlier sweeps are written; `fill`
    fills the disk while it runs; `free` makes room again before the next agent.
    """
    done_id = create(sweep_file(tmp_path, KNN_SWEEP), str(journal))
    agent = run("agent", done_id, "--storage", str(journal), "--count", "2", *QUIET)
    assert agent.returncode == 0, agent.stderr
    done = trials_of(journal, done_id)
    assert [state for _, state, _ in done] == ["COMPLETE", "COMPLETE"]
    long_id = create(sweep_file(tmp_path, LONG_CNN), str(journal))
    before = journal.read_bytes()
    proc = subprocess.Popen(
        [*CLI, "agent", long_id, "--storage", str(journal), *QUIET],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **limit(),
    )
    fill(proc)
    _, err = proc.communicate(timeout=300)
    free()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert_one_line_fault(result, "cannot write sweep storage", reason, "intact")
    # Readable by Optuna alone; every earlier record byte for byte, the earlier trials as they were.
    assert journal.read_bytes().startswith(before)
    assert trials_of(journal, done_id) == done
    (cut,) = [t for t in stored_trials(str(journal), long_id) if t.state == TrialState.RUNNING]
    assert cut.intermediate_values  # it was cut mid-trial, after some epochs
    # The next agent finds its owner dead and queues it again, linked to it.
    sweep = OptunaSweep(long_id, str(journal))
    assert sweep.liveness.reap_dead_trials() == [cut.number]
    retry = [t for t in stored_trials(str(journal), long_id) if t.state == TrialState.WAITING]
    assert [t.system_attrs["failed_trial"] for t in retry] == [cut.number]


@pytest.mark.slow
def test_full_disk_mid_trial_file_size_limit(tmp_path: Path) -> None:
    journal = tmp_path / "sweeps.journal"
    # Room for the trial's start and a few epochs: the disk fills in the middle of it.
    _full_disk_mid_trial(
        tmp_path,
        journal,
        "File too large",
        lambda: {"preexec_fn": file_limit(journal.stat().st_size + 3000)},
    )


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (root only), unmounted afterwards."""
    with tmpfs(tmp_path / "small", "2m") as mount:
        yield mount


def test_full_disk_mid_trial_tmpfs(tmp_path: Path, small_tmpfs: Path) -> None:
    journal = small_tmpfs / "sweeps.journal"
    filler = small_tmpfs / "filler"

    def fill(proc: subprocess.Popen[str]) -> None:
        locks = Path(f"{journal}.locks")
        wait_for(lambda: list(locks.glob("cnn-long-*/*.lock")) or proc.poll(), 120, "a trial")
        with filler.open("wb") as f:  # every free block, as another program would take them
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    _full_disk_mid_trial(
        tmp_path, journal, "No space left on device", fill=fill, free=lambda: filler.unlink()
    )


# -- PostgreSQL: a study another tool wrote ----------------------------------------------------
@pytest.fixture
def planted_study() -> Iterator[Callable[[str], str]]:
    names: list[str] = []

    def plant(sweep_yaml: str) -> str:
        name = f"planted-{uuid.uuid4().hex[:8]}"
        study = optuna.create_study(storage=open_storage(POSTGRES_URL), study_name=name)
        study.set_user_attr("sweep_yaml", sweep_yaml)
        study.set_user_attr("sweep_id", name)
        names.append(name)
        return name

    yield plant
    for name in names:
        optuna.delete_study(study_name=name, storage=open_storage(POSTGRES_URL))


@pytest.mark.parametrize(
    ("case", "command", "fragment"),
    [
        ("billion laughs", "leaderboard", "aliases are expanded"),
        ("grid over 10^9 integers", "stop", "an engine can list"),
        ("grid over 10^9 integers", "agent", "an engine can list"),
        ("deep flow nesting", "status", "nested over 64"),
    ],
)
def test_postgres_study_with_a_hostile_definition(
    tmp_path: Path, planted_study: Callable[[str], str], case: str, command: str, fragment: str
) -> None:
    text = HOSTILE_FILES[case][0](tmp_path).read_text(encoding="utf-8")
    name = planted_study(text)
    proc = run(command, name, "--storage", POSTGRES_URL, timeout=60)
    assert_one_line_error(proc, f"sweep {name} holds an invalid definition", fragment)


# -- reports -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a file", "under a file", "a read-only folder"])
def test_report_out_that_cannot_be_written(
    tmp_path: Path, where: str, journal_with_sweep: tuple[Path, str]
) -> None:
    journal, sweep_id = journal_with_sweep
    file = tmp_path / "file"
    file.write_text("x")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    out, fragment = {
        "a file": (file, "is a file"),
        "under a file": (file / "reports", "cannot make the report folder"),
        "a read-only folder": (folder, "permission denied"),
    }[where]
    proc = run(
        "report", sweep_id, "--storage", str(journal), "--out", str(out), prefix=unprivileged()
    )
    assert_one_line_error(proc, str(out), fragment)
