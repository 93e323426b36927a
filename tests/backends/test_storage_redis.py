"""The `redis://` storage against the Redis server on this host (127.0.0.1:6379): a sweep two
agents share, read back by the CLI, and a server that is not there as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_util import (
    KNN_SWEEP,
    assert_one_line_error,
    cli,
    create,
    finish_all,
    start_agents,
    sweep_file,
)

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

redis = pytest.importorskip("redis")  # in the dev extra: CI has it
DB_URL = "redis://127.0.0.1:6379/11"  # a database of its own, emptied before and after


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(DB_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("no Redis server on 127.0.0.1:6379 (this machine kind runs one)")
    client.flushdb()
    yield DB_URL
    client.flushdb()


def test_two_agents_share_a_redis_sweep(tmp_path: Path, redis_url: str) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=4), redis_url)
    agents = start_agents(sweep_id, redis_url, 2, "--artifacts", str(tmp_path / "kept"))
    assert [code for code, _ in finish_all(agents)] == [0, 0]
    board = cli("leaderboard", sweep_id, "--storage", redis_url, "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert len(rows) == 4 and {row["state"] for row in rows} == {"completed"}
    assert sweep_id in cli("ls", "--storage", redis_url).stdout


def test_a_redis_server_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"  # nothing listens on port 1
    creating = ["create", str(sweep_file(tmp_path, KNN_SWEEP)), "--backend", "optuna"]
    for command in (["ls"], creating):
        proc = cli(*command, "--storage", url)
        assert_one_line_error(proc, "cannot open sweep storage redis://:***@", "refused")
        assert "hunter2secret" not in proc.stdout + proc.stderr
