"""Local agent processes: `--gpus` parsing, and the fan-out `agent --gpus` and `run` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmnist.agent import spawn
from kmnist.errors import UserError


def test_gpu_ids() -> None:
    assert spawn.gpu_ids("all") is None
    assert spawn.gpu_ids("0, 2") == ["0", "2"]
    for bad in ("x", "0,,1", "-1", ""):
        with pytest.raises(UserError, match="--gpus"):
            spawn.gpu_ids(bad)


def test_without_option_drops_both_spellings() -> None:
    argv = ["agent", "s", "--gpus", "0,1", "--count", "2", "--gpus=all", "--gpus-x"]
    assert spawn.without_option(argv, "--gpus") == ["agent", "s", "--count", "2", "--gpus-x"]


def test_per_gpu_runs_one_agent_per_device_and_returns_the_worst_code(tmp_path: Path) -> None:
    # Real `kmnist-sweep agent` processes, one per device, each refusing an unknown sweep (2).
    journal = str(tmp_path / "sweeps.journal")
    argv = ["agent", "no-such-sweep", "--gpus", "0,1", "--storage", journal]
    assert spawn.per_gpu(["cpu", "cpu"], argv, journal) == 2


def test_wait_all_is_the_worst_exit_code() -> None:
    procs = spawn.start([[*spawn.cli("--version")], [*spawn.cli("no-such-command")]])
    assert spawn.wait_all(procs) == 2
