"""The W&B backend: failing fast without W&B, keeping the key secret, and the two server calls.

Without a key, or without a server, everything runs for real: `kmnist-sweep` in a subprocess,
W&B's client talking to servers on 127.0.0.1. `wandb.sweep` and `wandb.agent` need W&B's
cloud, which cannot be reached from here, so those two functions alone are replaced (at the
`wandb` module, the narrowest seam) to check the exact arguments the project passes and what it
does with each answer. The runs the agent trains are real offline W&B runs, read back.
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb
import yaml
from click.testing import CliRunner
from engine_util import assert_one_line_error
from wandb_helpers import (
    CLI,
    FAKE_KEY,
    FakeAgent,
    clean_env,
    closed_port,
    history,
    http_server,
    inspect,
    offline_runs,
    records,
    run,
    run_record,
    silent_server,
)

from kmnist.agent.keeper import RunArtifacts
from kmnist.agent.loop import Agent
from kmnist.backends.wandb.backend import SweepPath
from kmnist.backends.wandb.sweep import WandbSweep
from kmnist.cli import main
from kmnist.trainer import data as kdata

SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "knn_random.yaml"
SECRET_FORMS = [FAKE_KEY, base64.b64encode(f"api:{FAKE_KEY}".encode()).decode()[:40]]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in SECRET_FORMS:
            assert form not in text


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    return fn(), time.monotonic() - start


# -- no key, no server: for real, and fast ---------------------------------------------------
def test_create_without_a_key_fails_fast_suggesting_optuna(tmp_path: Path) -> None:
    command = [*CLI, "create", str(SWEEP), "--backend", "wandb"]
    proc, seconds = timed(lambda: run(command, clean_env(tmp_path), tmp_path))
    assert_one_line_error(proc, "no W&B API key", "WANDB_API_KEY", "--backend optuna")
    assert seconds < 10


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_create_with_no_server_fails_fast_and_never_shows_the_key(
    tmp_path: Path, server: str
) -> None:
    with silent_server() as silent:
        url = closed_port() if server == "refused" else silent
        env = clean_env(
            tmp_path, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=url, WANDB_HTTP_TIMEOUT="1"
        )
        command = [*CLI, "create", str(SWEEP), "--backend", "wandb"]
        proc, seconds = timed(lambda: run(command, env, tmp_path))
    assert_one_line_error(proc, "does not answer", "--backend optuna")
    assert_no_secret(proc.stdout, proc.stderr)
    assert seconds < 10


def test_a_server_that_echoes_the_auth_header_never_shows_the_key(tmp_path: Path) -> None:
    # The real `wandb.sweep`, against a server that puts the request's headers (the key, as
    # HTTP Basic auth) in its 401 answer: W&B repeats it in its error; we must not.
    with http_server(status=401) as url:
        env = clean_env(tmp_path, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=url)
        proc = run([*CLI, "create", str(SWEEP), "--backend", "wandb"], env, tmp_path)
    line = assert_one_line_error(proc, "cannot register the sweep with W&B", "--backend optuna")
    assert "Authorization" in line and "***" in line  # what was echoed, masked
    assert_no_secret(proc.stdout, proc.stderr)


def test_auto_without_a_key_uses_optuna_and_says_so(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KMNIST_SWEEP_STORAGE=str(tmp_path / "sweeps.journal"))
    proc = run([*CLI, "create", str(SWEEP)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backend: optuna (W&B not used: no W&B API key" in proc.stderr
    assert proc.stdout.strip().startswith("knn-random-")


def test_agent_for_a_wandb_sweep_without_a_key_fails_fast(tmp_path: Path) -> None:
    command = [*CLI, "agent", "team/proj/abc123"]
    proc, seconds = timed(lambda: run(command, clean_env(tmp_path), tmp_path))
    assert_one_line_error(proc, "no W&B API key", "Optuna sweep id")
    assert seconds < 10


# -- the two server calls, at the seam ---------------------------------------------------------
def test_auto_with_key_and_server_registers_the_file_unchanged_and_prints_its_path(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def sweep(config: dict, entity: str | None = None, project: str | None = None) -> str:
        calls.append((config, entity, project))
        os.environ["WANDB_ENTITY"] = "alice"  # as wandb.sweep does, from the server's answer
        return "abc123"

    monkeypatch.setattr(wandb, "sweep", sweep)
    result = CliRunner().invoke(main, ["create", str(SWEEP), "--name", "renamed"])  # auto
    assert result.exit_code == 0, result.output
    assert "backend: wandb (W&B API key from WANDB_API_KEY, server answers)" in result.stderr
    expected = {**yaml.safe_load(SWEEP.read_text()), "name": "renamed"}
    assert calls == [(expected, None, "kmnist-sweep")]
    assert result.stdout.strip() == "alice/kmnist-sweep/abc123"
    assert "/alice/kmnist-sweep/sweeps/abc123" in result.stderr
    assert "kmnist-sweep agent alice/kmnist-sweep/abc123" in result.stderr
    assert "offline engine" not in result.stderr  # the offline engine runs this file too
    assert_no_secret(result.output)


WANDB_ONLY = "fine for W&B; the offline engine would refuse it: "


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "program: other.py\nmethod: random\ncontroller: {type: local}\n"
            "parameters: {x: {values: [1, 2]}}\n",
            [
                f"{WANDB_ONLY}the offline agent runs only this project's trainer "
                "(kmnist/wandb_entry.py), not other.py",
                "controller local: on W&B, run `wandb controller SWEEP_ID` beside the agents",
            ],
        ),
    ],
    ids=["other-program"],
)
def test_create_on_wandb_says_what_the_offline_engine_would_refuse(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, text: str, said: list[str]
) -> None:
    """What `create --backend optuna` refuses with one line, W&B registers, saying so."""
    calls: list[dict] = []
    monkeypatch.setattr(wandb, "sweep", lambda config, **kw: calls.append(config) or "abc123")
    path = wandb_up / "sweep.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["create", str(path), "--backend", "wandb"])
    assert result.exit_code == 0, result.output
    assert calls == [yaml.safe_load(text)] and result.stdout.strip().endswith("/abc123")
    notes = result.stderr.splitlines()[: len(said)]  # one line each, before the sweep page
    assert notes == said


def test_a_scheduler_sweep_goes_to_wandb_unchanged_with_its_scheduler_command(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(wandb, "sweep", lambda config, **kw: calls.append(config) or "abc123")
    path = Path(__file__).resolve().parents[2] / "sweeps" / "pareto_cpu.yaml"
    result = CliRunner().invoke(main, ["create", str(path), "--backend", "wandb"])
    assert result.exit_code == 0, result.output
    assert calls == [yaml.safe_load(path.read_text())]  # W&B gets the file as it is
    sweep_path = result.stdout.strip()
    said = result.stderr.splitlines()
    assert f"start the scheduler with: wandb sweep-scheduler {sweep_path}" in said
    assert f"start agents with: kmnist-sweep agent {sweep_path}" in said


def test_create_on_wandb_says_bayes_startup_is_not_sent(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(wandb, "sweep", lambda config, **kw: calls.append(config) or "abc123")
    monkeypatch.setenv("KMNIST_BAYES_STARTUP", "5")
    result = CliRunner().invoke(main, ["create", str(SWEEP), "--backend", "wandb"])
    assert result.exit_code == 0, result.output
    assert calls == [yaml.safe_load(SWEEP.read_text())]  # W&B gets the file as it is
    assert result.stderr.splitlines()[0] == (
        "--bayes-startup (KMNIST_BAYES_STARTUP) is for the offline engine: not sent to W&B"
    )


def test_create_reports_a_wandb_error_in_one_masked_line(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sweep(config: dict, entity: str | None = None, project: str | None = None) -> str:
        raise wandb.errors.CommError(f"403 for https://x/graphql?api_key={FAKE_KEY}\nmore")

    monkeypatch.setattr(wandb, "sweep", sweep)
    result = CliRunner().invoke(main, ["create", str(SWEEP), "--backend", "wandb"])
    assert result.exit_code == 2
    assert "cannot register the sweep with W&B" in result.stderr and "api_key=***" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert_no_secret(result.output)


def test_create_refuses_an_invalid_file_before_calling_wandb(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wandb, "sweep", lambda *a, **k: pytest.fail("wandb.sweep was called"))
    bad = wandb_up / "bad.yaml"
    bad.write_text("method: bayes\nparameters:\n  lr: {min: 0.1, max: 0.01}\n")
    result = CliRunner().invoke(main, ["create", str(bad), "--backend", "wandb"])
    assert result.exit_code == 2 and f"{bad}:" in result.stderr


KNN = {"model": "knn", "train_size": 1000, "val_fraction": 0.05}
LONG_CNN = {
    "model": "cnn",
    "train_size": 600,
    "val_fraction": 0.02,
    "epochs": 200,
    "l1_size": 4,
    "l2_size": 8,
    "fc1_size": 16,
    "batch_size": 100,
}


@pytest.fixture(scope="module")
def kmnist(kmnist_dir: Path) -> kdata.Kmnist:
    return kdata.load(kmnist_dir)


def test_agent_calls_wandb_agent_and_trains_each_run_in_process(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    # The second run's knobs come as a nested group, as W&B hands out grouped parameters.
    runs = [{**KNN, "k": 3}, {**KNN, "vote": {"k": 5, "weights": "uniform"}}, {**KNN, "k": 7}]
    fake = FakeAgent(runs)
    monkeypatch.setattr(wandb, "agent", fake)
    seen: list[tuple[str, str]] = []
    sweep = WandbSweep(SweepPath("abc123", "proj", "team"))
    agent = Agent(
        sweep, "cpu", count=2, data=kmnist, on_trial=lambda t, r: seen.append((t.name, r.status))
    )
    summary = agent.run()
    [call] = fake.calls
    assert callable(call.pop("function"))
    assert call == {"sweep_id": "abc123", "entity": "team", "project": "proj"}
    assert summary.counts == {"completed": 2} and summary.ok
    assert summary.reason == "ran --count 2"
    assert seen == [("run abc123r0", "completed"), ("run abc123r1", "completed")]
    # --count ended W&B's loop too: the third run was never started
    assert fake.returned and fake.started == ["abc123r0", "abc123r1"]
    runs_written = offline_runs(wandb_up)
    assert len(runs_written) == 2
    for run_dir, (k, weights) in zip(runs_written, [(3, "distance"), (5, "uniform")], strict=True):
        record = run_record(run_dir)
        assert record["sweep_id"] == "abc123" and record["run_group"] == "knn"
        assert record["job_type"] == "knn"
        read = inspect(run_dir)
        assert read["config"]["k"] == k and read["config"]["weights"] == weights
        assert read["tags"] == ["knn"]
        assert "lr" not in read["config"]  # only the knobs the kNN reads
        assert len(history(run_dir)) == 1
        assert 0.3 < read["summary"]["test/accuracy"] == read["summary"]["kmnist_val_acc"]


def test_each_runs_weights_and_probabilities_are_logged_as_its_artifact(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    cnn = {**LONG_CNN, "epochs": 1}
    monkeypatch.setattr(wandb, "agent", FakeAgent([{**KNN, "k": 3}, cnn]))
    sweep = WandbSweep(SweepPath("art01", "proj"))
    summary = Agent(sweep, "cpu", count=2, data=kmnist, keep=RunArtifacts(sweep)).run()
    assert summary.counts == {"completed": 2}
    files = {}
    for run_dir in offline_runs(wandb_up):
        run_id = run_record(run_dir)["run_id"]
        [logged] = [r for r in records(run_dir) if r["type"] == "artifact"]
        assert logged["artifact"]["name"] == f"trial-{run_id}"
        assert logged["artifact"]["type"] == "model"
        entries = logged["artifact"]["manifest"]["contents"]
        files[run_id] = {entry["path"] for entry in entries}
    # the kNN keeps config and probabilities (it refits in seconds); the CNN its weights too
    assert files == {
        "art01r0": {"config.json", "probs.npz"},
        "art01r1": {"config.json", "probs.npz", "weights.pt"},
    }


def test_a_stop_request_ends_the_run_as_stopped_not_crashed(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    fake = FakeAgent([LONG_CNN], action="stop")
    monkeypatch.setattr(wandb, "agent", fake)
    summary = Agent(WandbSweep(SweepPath("stop01", "proj")), "cpu", data=kmnist).run()
    assert summary.counts == {"stopped": 1} and summary.ok
    assert summary.reason.startswith("sweep finished: W&B's agent returned")
    [run_dir] = offline_runs(wandb_up)
    read = inspect(run_dir)
    assert read["state"] == "finished" and read["exit_code"] == 0
    assert read["summary"]["status"] == "stopped" and "stopped" in read["tags"]
    assert 1 <= len(history(run_dir)) < 200


def test_sigterm_marks_the_running_run_preempting_so_wandb_requeues_it(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    fake = FakeAgent([LONG_CNN, KNN], action="sigterm")
    monkeypatch.setattr(wandb, "agent", fake)
    summary = Agent(WandbSweep(SweepPath("pre01", "proj")), "cpu", data=kmnist).run()
    assert signal.getsignal(signal.SIGTERM) == before  # handlers given back
    assert summary.counts == {"interrupted": 1} and "SIGTERM" in summary.reason
    assert fake.returned and fake.started == ["pre01r0"]  # the second run never started
    [run_dir] = offline_runs(wandb_up)
    assert any(r["type"] == "preempting" for r in records(run_dir))
    read = inspect(run_dir)
    assert read["exit_code"] != 0  # non-zero: W&B requeues a preempting run
    assert read["summary"]["status"] == "interrupted"
    assert 1 <= len(history(run_dir)) < 200


def test_sigterm_while_wandb_has_no_run_ends_the_agent_and_wandbs_loop(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    fake = FakeAgent([], idle=True)  # a sweep with nothing to hand out yet
    monkeypatch.setattr(wandb, "agent", fake)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    summary, seconds = timed(Agent(WandbSweep(SweepPath("idle01", "proj")), "cpu").run)
    timer.join()
    assert summary.counts == {} and summary.reason == "interrupted by SIGTERM"
    assert fake.returned and seconds < 10
    assert offline_runs(wandb_up) == []


def test_runs_the_trainer_refuses_fail_and_the_agent_gives_up_after_max_failures(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    bad = [{**KNN, "kk": 1}, {**KNN, "model": "svm"}, KNN]
    fake = FakeAgent(bad)
    monkeypatch.setattr(wandb, "agent", fake)
    sweep = WandbSweep(SweepPath("bad01", "proj"))
    summary = Agent(sweep, "cpu", max_failures=2, data=kmnist).run()
    assert summary.counts == {"failed": 2} and not summary.ok
    assert summary.reason.startswith("stopped after 2 failed trials in a row")
    assert fake.returned and fake.started == ["bad01r0", "bad01r1"]
    reasons = [inspect(run_dir) for run_dir in offline_runs(wandb_up)]
    assert [r["exit_code"] for r in reasons] == [1, 1]  # W&B shows them failed
    assert all(r["tags"] == ["invalid", "failed"] for r in reasons)
    assert "unknown parameter 'kk'" in reasons[0]["summary"]["failure_reason"]
    assert "'svm'" in reasons[1]["summary"]["failure_reason"]


def test_a_wandb_agent_error_is_one_masked_line(
    wandb_up: Path, monkeypatch: pytest.MonkeyPatch, kmnist: kdata.Kmnist
) -> None:
    def agent(*args: Any, **kw: Any) -> None:
        raise ValueError(f"sweep not found (Authorization: Bearer {FAKE_KEY})")

    monkeypatch.setattr(wandb, "agent", agent)
    result = CliRunner().invoke(main, ["agent", "team/proj/nope", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "the W&B agent for team/proj/nope stopped" in result.stderr
    assert "Bearer ***" in result.stderr
    assert_no_secret(result.output)


def test_local_commands_point_a_wandb_sweep_to_wandb() -> None:
    result = CliRunner().invoke(main, ["leaderboard", "alice/proj/abc123"])
    assert result.exit_code == 2
    assert "is a W&B sweep" in result.stderr and "/alice/proj/sweeps/abc123" in result.stderr
