"""W&B's agent contract for `python -m kmnist.wandb_entry`, run for real in offline mode.

The command line and the param file are made by W&B's own code (`create_sweep_command_args`,
`save_config_file_from_dict`, what `wandb agent` calls for each run), and the environment is
set as `wandb agent` sets it; the run it writes is read back from its `.wandb` file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engine_util import assert_one_line_error
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args
from wandb.sdk.lib.config_util import save_config_file_from_dict
from wandb_helpers import (
    clean_env,
    history,
    inspect,
    offline_runs,
    run_record,
)

from kmnist.backends.wandb.params import agent_params, read_param_file, split_args
from kmnist.trainer.params import ConfigError, flatten_groups, resolve

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

SMALL_CNN = {
    "model": "cnn",
    "train_size": 600,
    "val_fraction": 0.02,
    "l1_size": 4,
    "l2_size": 8,
    "fc1_size": 16,
    "batch_size": 100,
}


def as_wandb_agent(
    tmp_path: Path, params: dict[str, Any], sweep_id: str, run_id: str, with_args: bool = True
) -> subprocess.Popen:
    """Start the entry point as `wandb agent` starts a run's program (not waiting for it)."""
    args = {name: {"value": value} for name, value in params.items()}
    # wandb agent: param file at $WANDB_DIR/wandb/sweep-ID/config-RUN.yaml, env set for the child
    param_path = tmp_path / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    save_config_file_from_dict(str(param_path), args)
    env = clean_env(
        tmp_path,
        WANDB_MODE="offline",
        WANDB_SWEEP_ID=sweep_id,
        WANDB_RUN_ID=run_id,
        WANDB_SWEEP_PARAM_PATH=str(param_path),
        WANDB_PROJECT="kmnist-contract",
    )
    argv = create_sweep_command_args({"args": args})["args"] if with_args else []
    command = [sys.executable, "-m", "kmnist.wandb_entry", *argv]
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc


def finished(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_knn_run_with_booleans_and_a_nested_group(tmp_path: Path, kmnist_dir: Path) -> None:
    params = {
        "model": "knn",
        "train_size": 1000,
        "val_fraction": 0.05,
        "standardize": True,  # arrives as --standardize=True
        "vote": {"k": 3, "weights": "uniform"},  # a group: --vote={'k': 3, 'weights': 'uniform'}
    }
    proc = as_wandb_agent(tmp_path, params, sweep_id="swp0knn1", run_id="run0knn1")
    done = finished(proc)
    assert done.returncode == 0, done.stderr
    [run_dir] = offline_runs(tmp_path)
    run = inspect(run_dir)
    assert run["state"] == "finished" and run["project"] == "kmnist-contract"
    config = run["config"]
    assert config["model"] == "knn" and config["train_size"] == 1000
    assert config["standardize"] is True and config["k"] == 3 and config["weights"] == "uniform"
    assert "lr" not in config  # only the knobs the kNN reads
    summary = run["summary"]
    assert 0.3 < summary["test/accuracy"] <= 1
    assert summary["kmnist_val_acc"] == summary["test/accuracy"]
    assert summary["status"] == "completed" and run["tags"] == ["knn"]
    assert len(history(run_dir)) == 1  # one log call per epoch; a kNN has one
    record = run_record(run_dir)
    assert record["sweep_id"] == "swp0knn1" and record["run_id"] == "run0knn1"
    assert record["run_group"] == "knn" and record["job_type"] == "knn"


def test_cnn_reads_the_param_file_and_logs_each_epoch(tmp_path: Path, kmnist_dir: Path) -> None:
    # No ${args} in the command: the values come from WANDB_SWEEP_PARAM_PATH alone, typed.
    params = {**SMALL_CNN, "epochs": 2, "optimizer": "sgd", "lr": 0.05, "nesterov": False}
    proc = as_wandb_agent(tmp_path, params, "swp0cnn1", "run0cnn1", with_args=False)
    done = finished(proc)
    assert done.returncode == 0, done.stderr
    [run_dir] = offline_runs(tmp_path)
    run = inspect(run_dir)
    config = run["config"]
    assert config["epochs"] == 2 and config["optimizer"] == "sgd" and config["lr"] == 0.05
    assert config["nesterov"] is False and config["l1_size"] == 4
    steps = history(run_dir)
    assert [step["epoch"] for step in steps] == [1, 2]
    assert {"train/loss", "val/loss", "val/accuracy", "lr"} <= set(steps[0])
    assert run["summary"]["epochs"] == 2 and "test/accuracy" in run["summary"]
    assert run_record(run_dir)["sweep_id"] == "swp0cnn1"


@pytest.mark.slow
def test_sigterm_from_wandb_agent_ends_the_run_as_stopped(tmp_path: Path, kmnist_dir: Path) -> None:
    # `wandb agent` stops a hyperband loser with SIGTERM: the run must end clean, not crashed.
    params = {**SMALL_CNN, "epochs": 60}
    proc = as_wandb_agent(tmp_path, params, "swp0stop", "run0stop")
    deadline = time.monotonic() + 60
    while not offline_runs(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)  # the run folder appears at wandb.init
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    done = finished(proc)
    assert done.returncode == 0, done.stderr
    [run_dir] = offline_runs(tmp_path)
    run = inspect(run_dir)
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["summary"]["status"] == "stopped" and "stopped" in run["tags"]
    epochs = len(history(run_dir))
    assert 1 <= epochs < 60 and run["summary"]["epochs"] == epochs
    assert "test/accuracy" in run["summary"]  # still scored once, at the end


def test_bad_parameter_from_the_agent_is_one_line(tmp_path: Path) -> None:
    proc = as_wandb_agent(tmp_path, {"model": "knn", "vote": {"kk": 3}}, "swp0bad", "run0bad")
    assert_one_line_error(finished(proc), "unknown parameter 'kk'", "'k'")


# -- the parsing, in-process -------------------------------------------------------------------
def test_split_args_keeps_train_options_and_reads_groups_as_literals() -> None:
    argv = ["--device", "cpu", "--k=3", "--standardize", "--vote={'weights': 'uniform'}"]
    params, rest = split_args([*argv, "--x={__import__('os').getcwd()}", "--lr", "0.1"])
    assert params == {"k": "3", "standardize": "True", "vote": {"weights": "uniform"}, "lr": "0.1"}
    assert rest == ["--device", "cpu", "--x={__import__('os').getcwd()}"]  # never evaluated


def test_param_file_wins_over_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "config-r.yaml"
    save_config_file_from_dict(str(path), {"k": {"value": 7}, "g": {"value": {"metric": "cosine"}}})
    assert read_param_file(path) == {"k": 7, "g": {"metric": "cosine"}}
    params, rest = agent_params(
        ["--k=3", "--weights=uniform"], {"WANDB_SWEEP_PARAM_PATH": str(path)}
    )
    assert params == {"k": 7, "weights": "uniform", "metric": "cosine"} and rest == []


def test_a_parameter_given_twice_through_a_group_is_refused() -> None:
    with pytest.raises(ConfigError, match="'k' is given twice"):
        flatten_groups({"k": 3, "vote": {"k": 4}})


def test_the_entry_point_flattens_groups_as_the_trainer_resolves_them() -> None:
    """One flattening for both: `_` names (W&B's own) are left out at every level, by both."""
    nested = {"k": 3, "vote": {"weights": "uniform", "_x": 1}, "_wandb": {"cli_version": "0"}}
    params, rest = agent_params(["--k=3", "--vote={'weights': 'uniform', '_x': 1}"], {})
    assert params == {"k": "3", "weights": "uniform"} and rest == []
    assert resolve(params) == resolve(nested) == resolve(flatten_groups(nested))
