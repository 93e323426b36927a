"""`kmnist-sweep launch`: the containers it asks Docker for, against a recording fake client.

The library (`kmnist.agent.containers`) plans, starts and removes them; the command renders.

The real engine runs it in tests/docker/run_compose_check.sh (two agents finish a sweep).
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from kmnist.agent import containers as kc
from kmnist.cli import main
from kmnist.errors import UserError


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name, self.labels = name, labels
        self.calls: list[Any] = []

    def stop(self, timeout: int) -> None:
        self.calls.append(("stop", timeout))

    def remove(self, v: bool = False) -> None:
        self.calls.append(("remove", v))


class FakeContainers:
    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.existing: list[FakeContainer] = []

    def run(self, image: str, **kwargs: Any) -> FakeContainer:
        self.runs.append({"image": image, **kwargs})
        return FakeContainer(kwargs["name"], kwargs["labels"])

    def list(self, all: bool, filters: dict[str, list[str]]) -> list[FakeContainer]:
        def matches(c: FakeContainer) -> bool:
            for label in filters["label"]:
                key, _, value = label.partition("=")
                if key not in c.labels or (value and c.labels[key] != value):
                    return False
            return True

        return [c for c in self.existing if matches(c)]


class FakeClient:
    def __init__(self) -> None:
        self.containers = FakeContainers()


def test_each_replica_is_pinned_to_its_own_gpu() -> None:
    client = FakeClient()
    specs = kc.plan("s-1", 4, ["0", "1", "2", "3"], "postgresql://u:p@db/sweeps", env={})
    kc.start(client, specs, "img:1", "net", "vol")
    runs = client.containers.runs
    assert [r["device_requests"][0].device_ids for r in runs] == [["0"], ["1"], ["2"], ["3"]]
    assert all(r["device_requests"][0].capabilities == [["gpu"]] for r in runs)
    assert len({r["name"] for r in runs}) == 4
    first = runs[0]
    assert first["image"] == "img:1" and first["command"] == ["agent", "s-1"]
    assert first["environment"] == {
        "KMNIST_SWEEP_STORAGE": "postgresql://u:p@db/sweeps",
        "SWEEP_ID": "s-1",
    }
    assert first["labels"] == {kc.LABEL: "1", kc.SWEEP_LABEL: "s-1"}
    assert first["volumes"] == {"vol": {"bind": "/data", "mode": "rw"}}
    assert first["network"] == "net" and first["detach"] is True
    assert first["restart_policy"]["Name"] == "on-failure"


def test_more_replicas_than_gpus_go_round_robin() -> None:
    specs = kc.plan("s", 5, ["0", "1"], None, env={})
    assert [s.gpu for s in specs] == ["0", "1", "0", "1", "0"]


def test_cpu_replicas_share_the_cores() -> None:
    specs = kc.plan("s", 2, [], None, env={}, cpus=8)
    assert all(s.gpu is None and s.command == ["agent", "s", "--threads", "4"] for s in specs)
    client = FakeClient()
    kc.start(client, specs, "img", None, "vol")
    assert client.containers.runs[0]["device_requests"] == []


def test_only_set_wandb_variables_are_passed_on() -> None:
    env = {"WANDB_API_KEY": "k", "WANDB_MODE": "", "HOME": "/root", "AWS_SECRET": "x"}
    (spec,) = kc.plan("s", 1, [], None, env=env)
    assert spec.environment == {"WANDB_API_KEY": "k", "SWEEP_ID": "s"}


def test_down_stops_and_removes_launched_containers_only() -> None:
    client = FakeClient()
    mine = FakeContainer("a", {kc.LABEL: "1", kc.SWEEP_LABEL: "s1"})
    other_sweep = FakeContainer("b", {kc.LABEL: "1", kc.SWEEP_LABEL: "s2"})
    unrelated = FakeContainer("c", {"com.docker.compose.project": "x"})
    client.containers.existing = [mine, other_sweep, unrelated]
    assert kc.down(client, "s1") == ["a"]
    assert mine.calls == [("stop", kc.GRACE_SECONDS), ("remove", True)] and not other_sweep.calls
    assert sorted(kc.down(client)) == ["a", "b"]
    assert not unrelated.calls


@pytest.mark.parametrize(
    ("value", "found", "expected"),
    [(None, 4, []), ("all", 3, ["0", "1", "2"]), ("0,2", 0, ["0", "2"]), ("1", 0, ["1"])],
)
def test_parse_gpus(value: str | None, found: int, expected: list[str]) -> None:
    assert kc.parse_gpus(value, lambda: found) == expected


@pytest.mark.parametrize(("value", "found"), [("all", 0), ("x", 2), ("0,,1", 2), ("-1", 2)])
def test_parse_gpus_refuses(value: str, found: int) -> None:
    with pytest.raises(UserError, match="--gpus"):
        kc.parse_gpus(value, lambda: found)


@pytest.mark.parametrize(
    "args",
    [
        ["launch"],
        ["launch", "s", "--replicas", "0"],
        ["launch", "s", "--gpus", "x"],
        ["launch", "s", "--storage", "/tmp/sweeps.journal"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(kc, "client", lambda: pytest.fail("no engine call on bad input"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_cli_launches_through_the_sdk(monkeypatch) -> None:
    client = FakeClient()
    monkeypatch.setattr(kc, "client", lambda: client)
    monkeypatch.setattr(kc, "count_gpus", lambda: 2)
    result = CliRunner().invoke(
        main, ["launch", "s-9", "--replicas", "2", "--gpus", "all", "--storage", "redis://r:6379"]
    )
    assert result.exit_code == 0, result.output
    assert [r["device_requests"][0].device_ids for r in client.containers.runs] == [["0"], ["1"]]
    assert "kmnist-agent-s-9-0: GPU 0, storage redis://r:6379" in result.output
