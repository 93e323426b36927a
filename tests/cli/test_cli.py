"""The real `kmnist-sweep` command, run as a user runs it: results, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from engine_util import assert_one_line_error

from kmnist.trainer import data as kdata

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

FAST_KNN = ["--model=knn", "--train_size=2000", "--val_fraction=0.05"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        ["kmnist-sweep", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )


def test_train_knn_prints_a_result_table() -> None:
    proc = cli("train", *FAST_KNN)
    assert proc.returncode == 0, proc.stderr
    assert "test/accuracy" in proc.stdout and "kmnist_val_acc" in proc.stdout


def test_train_json_output_carries_config_summary_and_history() -> None:
    proc = cli("train", *FAST_KNN, "--k", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed"
    assert out["config"]["k"] == 3 and out["config"]["train_size"] == 2000
    assert len(out["history"]) == 1
    assert 0.5 < out["summary"]["test/accuracy"] <= 1


def test_train_help_lists_every_parameter() -> None:
    proc = cli("train", "--help")
    assert proc.returncode == 0
    for name in ("lr=0.001", "optimizer=adam", "k=4", "aug_erasing=0.0", "batch_norm=True"):
        assert name in proc.stdout


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            ["train", "--lrr=0.1"],
            ["unknown parameter 'lrr'", "did you mean 'lr'", "valid parameters"],
        ),
        (["train", "--optimizer=rmsprop"], ["optimizer", "adam, adamw, sgd, adadelta", "rmsprop"]),
        (["train", "--lr=fast"], ["parameter 'lr'", "expected a number", "fast"]),
        (["train", "--k=0"], ["parameter 'k'", "[1, inf]"]),
        (["train", "--epochs"], ["'epochs' has no value"]),
        (["train", "lr=0.1"], ["unexpected argument 'lr=0.1'", "--name=value"]),
        (["train", "--device"], ["requires an argument"]),
        (["trian"], ["No such command 'trian'"]),
        (["agent", "some-sweep", "--gpus", "bogus"], ["--gpus 'bogus'", "0,1"]),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(cli(*args), *fragments)


def test_missing_data_offline_says_where_and_how(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback refuses connections: a download fails at once, as offline.
    env = {"KMNIST_DATA_DIR": str(tmp_path / "empty"), "KMNIST_MIRROR": "http://127.0.0.1:9/"}
    proc = cli("train", *FAST_KNN, env=env)
    assert_one_line_error(
        proc,
        "cannot download",
        str(tmp_path / "empty"),
        "KMNIST_DATA_DIR",
        "kmnist-sweep data download",
    )


def test_data_verify_and_info_on_a_corrupt_folder(tmp_path: Path) -> None:
    source = kdata.data_folder()
    for name, _ in kdata.FILES["npz"].values():
        shutil.copyfile(source / name, tmp_path / name)
    ok = cli("data", "info", "--data-dir", str(tmp_path))
    assert ok.returncode == 0 and "5400" in ok.stdout and "54000" in ok.stdout
    labels = tmp_path / "kmnist-test-labels.npz"
    labels.write_bytes(labels.read_bytes()[:-10])
    expected_md5 = kdata.FILES["npz"]["test", "labels"][1]
    assert_one_line_error(
        cli("data", "verify", "--data-dir", str(tmp_path)), "kmnist-test-labels.npz", expected_md5
    )


def test_diverging_run_exits_1_with_the_reason() -> None:
    proc = cli(
        "train",
        "--model=cnn",
        "--optimizer=sgd",
        "--lr=1e12",
        "--epochs=1",
        "--train_size=500",
        "--val_fraction=0.05",
    )
    assert proc.returncode == 1
    assert "Trial failed" in proc.stderr and "Traceback" not in proc.stderr


def test_train_wandb_offline_writes_a_run_that_reads_back(tmp_path: Path) -> None:
    # A real W&B run in offline mode: no server is needed to write it or to read it back.
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    proc = cli("train", *FAST_KNN, "--wandb", env=env)
    assert proc.returncode == 0, proc.stderr
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    inspect = subprocess.run(
        ["wandb", "leet", "inspect", "--summary", "--json", str(run_dirs[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    record = json.loads(inspect.stdout)
    assert record["state"] == "finished" and record["project"] == "kmnist-sweep"
    assert record["config"]["model"] == "knn" and record["config"]["train_size"] == 2000
    assert "lr" not in record["config"]  # only the knobs the kNN reads
    summary = record["summary"]
    assert 0.5 < summary["test/accuracy"] <= 1
    assert summary["kmnist_val_acc"] == summary["test/accuracy"]
    assert 0.5 < summary["val/accuracy"] <= 1
