"""The container files as files: Dockerfile, compose, .dockerignore, .env.example, the lock, the
entrypoint and the healthcheck. The real engine runs them in tests/docker/run_compose_check.sh.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmnist import healthcheck

ROOT = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (`!reset`, `!override`) read as plain values."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))


def compose(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(encoding="utf-8"), Loader=ComposeLoader)


def dockerfile_lines(path: str = "Dockerfile") -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / path).read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


# -- Dockerfile ---------------------------------------------------------------------------------
def test_dockerfile_takes_its_base_from_an_arg_and_has_no_syntax_line() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "# syntax=" not in text  # BuildKit would pull a front-end image
    lines = dockerfile_lines()
    assert lines[0].startswith("ARG BASE=pytorch/pytorch:") and "cuda" in lines[0]
    assert all(line.split()[1] == "${BASE}" for line in lines if line.startswith("FROM"))


def test_dockerfile_runs_as_a_numeric_non_root_user_with_the_cli_entrypoint() -> None:
    lines = dockerfile_lines()
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users == ["10001:10001"]
    assert 'ENTRYPOINT ["kmnist-entrypoint"]' in lines and lines[-1] == 'CMD ["agent"]'
    assert "KMNIST_DATA_DIR=/data" in " ".join(lines)


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    lines = dockerfile_lines()
    order = [i for i, line in enumerate(lines) if line.startswith(("COPY", "RUN"))]
    lock = next(i for i in order if "requirements.lock" in lines[i] and "pip install" in lines[i])
    source = next(i for i in order if lines[i].startswith("COPY kmnist"))
    assert lock < source


@pytest.mark.parametrize("path", ["Dockerfile", "docker/postgres/Dockerfile"])
def test_no_secret_is_an_arg_or_env(path: str) -> None:
    for line in dockerfile_lines(path):
        if line.startswith(("ARG", "ENV")):
            assert not re.search(r"KEY|TOKEN|PASSWORD|SECRET", line, re.I), line


def test_dockerignore_keeps_secrets_caches_and_data_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert patterns[patterns.index("*") - 1].startswith("#")  # everything out first
    for needed in ("**/.git", "**/.env", "**/.netrc", "**/netrc", "**/.venv*"):
        assert needed in patterns
    for needed in ("**/wandb/run-*", "**/wandb/offline-run-*", "**/wandb-runs/"):  # W&B runs
        assert needed in patterns
    # No folder-name rule may drop a package of the project (`**/wandb/` once dropped
    # kmnist/backends/wandb from the image).
    dropped = {p[3:-1] for p in patterns if p.startswith("**/") and p.endswith("/")}
    packages = {init.parent.name for init in (ROOT / "kmnist").rglob("__init__.py")}
    assert not dropped & packages, dropped & packages
    for needed in ("**/__pycache__/", "**/.pytest_cache/", "**/*.npz", "bench/results/"):
        assert needed in patterns
    let_in = [p[1:] for p in patterns if p.startswith("!")]
    assert set(let_in) >= {"kmnist/", "pyproject.toml", "docker/requirements.lock"}


def test_executables_keep_their_mode() -> None:
    for path in ("agents/entrypoint.sh", "docker/postgres/entrypoint.sh"):
        assert (ROOT / path).stat().st_mode & stat.S_IXUSR, path  # COPY keeps it (no --chmod)


# -- compose ------------------------------------------------------------------------------------
def test_agent_service_scales_leases_gpus_and_stops_gracefully() -> None:
    agent = compose("docker-compose.yml")["services"]["agent"]
    assert "container_name" not in agent and "ports" not in agent  # --scale agent=N
    (device,) = agent["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert agent["environment"]["KMNIST_GPU_LEASE_DIR"] == "/leases"
    assert "leases:/leases" in agent["volumes"] and "data:/data" in agent["volumes"]
    assert agent["env_file"] == [{"path": ".env", "required": False}]
    assert agent["restart"] == "on-failure"
    assert agent["stop_signal"] == "SIGTERM" and agent["stop_grace_period"] == "2m"
    assert agent["healthcheck"]["test"][-2:] == ["-m", "kmnist.healthcheck"]


def test_offline_profile_has_postgres_and_the_dashboard() -> None:
    spec = compose("docker-compose.yml")
    services = spec["services"]
    postgres, dashboard = services["postgres"], services["optuna-dashboard"]
    assert postgres["profiles"] == dashboard["profiles"] == ["offline"]
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"] and "pgdata" in spec["volumes"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-}"
    assert postgres["build"]["context"] == "docker/postgres"
    assert dashboard["ports"] == ["127.0.0.1:${DASHBOARD_PORT:-8080}:8080"]
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which the image lacks
    assert dashboard["environment"]["DASHBOARD_STORAGE"].startswith("postgresql+psycopg2://")


def test_cpu_override_resets_the_gpu_reservation() -> None:
    text = (ROOT / "compose.cpu.yml").read_text(encoding="utf-8")
    assert "devices: !reset []" in text
    agent = compose("compose.cpu.yml")["services"]["agent"]
    assert agent["deploy"]["resources"]["reservations"]["devices"] is None


def test_env_example_names_the_settings_and_holds_no_secret() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in ("SWEEP_ID", "WANDB_API_KEY", "KMNIST_SWEEP_STORAGE", "POSTGRES_PASSWORD"):
        assert re.search(rf"^#? ?{name}=", text, re.M), name
    assert re.search(r"^# WANDB_API_KEY=$", text, re.M)  # no key, not even an empty one
    assert re.search(r"^POSTGRES_PASSWORD=change-me", text, re.M)
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


# -- entrypoint ---------------------------------------------------------------------------------
@pytest.fixture
def fake_cli(tmp_path: Path) -> Path:
    """A `kmnist-sweep` on PATH that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kmnist-sweep"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    return tmp_path


def entrypoint(fake: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": f"{fake}/bin:{os.environ['PATH']}", "KMNIST_DATA_DIR": str(fake / "d")}
    return subprocess.run(
        [str(ROOT / "agents/entrypoint.sh"), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def calls(fake: Path) -> list[str]:
    return (fake / "calls").read_text().splitlines()


def test_entrypoint_default_runs_the_agent_on_sweep_id(fake_cli: Path) -> None:
    assert entrypoint(fake_cli, SWEEP_ID="abc-123").returncode == 0
    assert calls(fake_cli) == ["data download", "agent abc-123"]
    assert entrypoint(fake_cli, "agent", SWEEP_ID="x").returncode == 0  # CMD ["agent"]
    assert calls(fake_cli)[-1] == "agent x"


def test_entrypoint_passes_other_commands_through(fake_cli: Path) -> None:
    assert entrypoint(fake_cli, "leaderboard", "abc", "--top", "3").returncode == 0
    assert calls(fake_cli) == ["leaderboard abc --top 3"]


def test_entrypoint_without_sweep_id_says_so_in_one_line(fake_cli: Path) -> None:
    result = entrypoint(fake_cli)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "SWEEP_ID is not set" in result.stderr


# -- healthcheck --------------------------------------------------------------------------------
def test_healthcheck_journal_folder(tmp_path: Path, monkeypatch) -> None:
    assert "writable" in healthcheck.check(str(tmp_path / "new" / "sweeps.journal"))
    monkeypatch.setattr(healthcheck.os, "access", lambda path, mode: False)  # root writes anyway
    with pytest.raises(healthcheck.Unhealthy, match=f"folder {tmp_path} is not writable"):
        healthcheck.check(str(tmp_path / "new" / "sweeps.journal"))


def test_healthcheck_server_storage() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert "reachable" in healthcheck.check(f"postgresql://u:p@127.0.0.1:{port}/db")
    with pytest.raises(healthcheck.Unhealthy, match="unreachable"):
        healthcheck.check(f"redis://127.0.0.1:{port}", timeout=2)


def test_healthcheck_main_exit_codes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KMNIST_SWEEP_STORAGE", str(tmp_path / "j.journal"))
    assert healthcheck.main() == 0
    monkeypatch.setenv("KMNIST_SWEEP_STORAGE", "postgresql://u@127.0.0.1:1/db")
    assert healthcheck.main() == 1
