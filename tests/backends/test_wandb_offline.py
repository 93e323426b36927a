"""Trials of an Optuna sweep logged as offline W&B runs, read back, and `kmnist-sweep sync`.

All real: the agent in a subprocess, Optuna in a journal file, wandb writing offline runs that
`wandb leet inspect` reads back, `wandb sync` against servers on 127.0.0.1 (W&B's cloud cannot
be reached from here).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from engine_util import assert_one_line_error
from wandb_helpers import (
    CLI,
    FAKE_KEY,
    clean_env,
    history,
    http_server,
    inspect,
    offline_runs,
    run,
    run_record,
)

from kmnist.backends import open_control
from kmnist.backends.optuna.backend import OptunaSweep, create_sweep
from kmnist.backends.wandb.trials import WandbLoggedSweep
from kmnist.cli.wandb_commands import wandb_mode
from kmnist.sweep import load

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

TINY_KNN = {
    "name": "knn-offline",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 3,
    "parameters": {
        "model": {"value": "knn"},
        "train_size": {"value": 1000},
        "val_fraction": {"value": 0.05},
        "k": {"min": 1, "max": 12},
        "weights": {"values": ["uniform", "distance"]},
    },
}


@pytest.fixture(scope="module")
def logged_sweep(tmp_path_factory: pytest.TempPathFactory, kmnist_dir: Path) -> tuple[Path, str]:
    """A 3-trial Optuna sweep run by one agent with `--wandb offline`; (folder, sweep id)."""
    folder = tmp_path_factory.mktemp("offline")
    spec = folder / "knn.yaml"
    spec.write_text(yaml.safe_dump(TINY_KNN), encoding="utf-8")
    env = clean_env(folder, KMNIST_SWEEP_STORAGE=str(folder / "sweeps.journal"))
    created = run([*CLI, "create", str(spec), "--backend", "optuna"], env, folder)
    assert created.returncode == 0, created.stderr
    sweep_id = created.stdout.strip()
    agent = run([*CLI, "agent", sweep_id, "--wandb", "offline", "--threads", "1"], env, folder)
    assert agent.returncode == 0, agent.stderr
    assert "3 completed" in agent.stderr
    return folder, sweep_id


def test_each_trial_is_one_readable_run_with_group_config_history_summary(
    logged_sweep: tuple[Path, str],
) -> None:
    folder, sweep_id = logged_sweep
    trials = {t.number: t for t in open_control(sweep_id, str(folder / "sweeps.journal")).trials()}
    runs = offline_runs(folder / sweep_id)
    assert len(runs) == len(trials) == 3
    for run_dir in runs:
        read = inspect(run_dir)
        trial = trials[read["summary"]["trial"]]
        assert read["state"] == "finished" and read["project"] == "kmnist-sweep"
        assert read["config"] == trial.config  # the trial's parameters, as Optuna gave them
        assert read["name"] == f"{sweep_id}-trial-{trial.number}"
        assert read["tags"] == ["knn"]
        record = run_record(run_dir)
        assert record["run_group"] == sweep_id and record["job_type"] == "knn"
        steps = history(run_dir)
        assert len(steps) == 1 and steps[0]["val/accuracy"] == trial.value
        summary = read["summary"]
        assert summary["status"] == "completed" and summary["val/accuracy"] == trial.value
        assert summary["test/accuracy"] == trial.summary["test/accuracy"]
        assert summary["kmnist_val_acc"] == summary["test/accuracy"]


def test_sync_dry_run_lists_the_runs_and_skips_synced_ones(logged_sweep: tuple[Path, str]) -> None:
    folder, sweep_id = logged_sweep
    env = clean_env(folder)
    runs = offline_runs(folder / sweep_id)
    listed = run([*CLI, "sync", sweep_id, "--dry-run", "--project", "p"], env, folder)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [str(r) for r in runs]
    assert "would upload 3 offline run(s) to p" in listed.stderr
    synced = next(runs[0].glob("*.wandb")).with_suffix(".wandb.synced")
    synced.touch()  # what `wandb sync` leaves beside a run it uploaded
    try:
        again = run([*CLI, "sync", sweep_id, "--dry-run"], env, folder)
        assert again.stdout.split() == [str(r) for r in runs[1:]]
    finally:
        synced.unlink()


def test_sync_without_a_key_fails_fast_in_one_line(logged_sweep: tuple[Path, str]) -> None:
    folder, sweep_id = logged_sweep
    start = time.monotonic()
    proc = run([*CLI, "sync", sweep_id], clean_env(folder), folder)
    assert_one_line_error(proc, "no W&B API key", "sync again once W&B is reachable")
    assert time.monotonic() - start < 10 and proc.stdout == ""


def test_sync_gives_up_after_its_timeout_when_the_server_hangs(
    logged_sweep: tuple[Path, str],
) -> None:
    # A server that answers the reachability probe, then never answers W&B's own requests:
    # `wandb sync` alone would retry forever.
    folder, sweep_id = logged_sweep
    with http_server(status=200, hang=True) as url:
        env = clean_env(folder, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=url)
        start = time.monotonic()
        proc = run([*CLI, "sync", sweep_id, "--timeout", "3"], env, folder, timeout=60)
    assert time.monotonic() - start < 20
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    said, error = proc.stderr.strip().splitlines()  # what it set out to do, then why it stopped
    assert "uploading 3 offline run(s)" in said
    assert "did not finish in 3 s" in error and "run `kmnist-sweep sync` again" in error
    assert FAKE_KEY not in proc.stderr + proc.stdout


def test_sync_of_an_unknown_sweep_says_where_it_looked(tmp_path: Path) -> None:
    proc = run([*CLI, "sync", "nope-123abc", "--dry-run"], clean_env(tmp_path), tmp_path)
    assert_one_line_error(proc, "no offline W&B runs for sweep nope-123abc", str(tmp_path))


def test_a_pruned_trial_is_tagged_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wrapper in-process, around a real Optuna sweep: the agent prunes by finishing the
    # trial as "stopped"; the W&B run shows it as pruned.
    monkeypatch.setenv("HOME", str(tmp_path))  # W&B's own logs land in tmp too
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec_file = tmp_path / "knn.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_KNN), encoding="utf-8")
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create_sweep(spec_file.read_text(), load(spec_file), "pruned", journal)
    sweep = WandbLoggedSweep(OptunaSweep(sweep_id, journal), mode="offline")
    ticket = sweep.next_trial()
    epoch = {"epoch": 1, "val/accuracy": 0.5, "val/loss": 1.0}
    sweep.report(ticket, 1, epoch)
    sweep.finish(ticket, "stopped", {"val/accuracy": 0.5}, [epoch])
    assert open_control(sweep_id, journal).trials()[0].state == "pruned"
    [run_dir] = offline_runs(tmp_path / sweep_id)
    read = inspect(run_dir)
    assert read["tags"] == ["knn", "pruned"] and read["summary"]["status"] == "pruned"
    assert read["exit_code"] == 0 and len(history(run_dir)) == 1


def test_wandb_offline_is_the_default_under_wandb_mode_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(None) == "offline" and wandb_mode("off") == "off"
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode(None) == "off"
