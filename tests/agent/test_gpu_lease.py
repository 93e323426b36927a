"""GPU leasing on the CPU: simulated device slots, real agent processes holding real flocks."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_util import assert_one_line_error

from kmnist.agent import gpu_lease
from kmnist.agent.gpu_lease import (
    Gpu,
    LeaseTimeout,
    acquire,
    auto_share,
    holders,
    lease_device,
    simulated,
    try_acquire,
)

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

# One agent process: lease a slot among `count` simulated GPUs, print "gpu slot", hold it until
# stdin closes or the process is killed.
HOLDER = """
import sys
from pathlib import Path
from kmnist.agent import gpu_lease
folder, count, share = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
timeout = float(sys.argv[4])
try:
    lease = gpu_lease.acquire(folder, gpu_lease.simulated(count), share, timeout=timeout,
                              poll=0.05, on_wait=lambda: print("waiting", flush=True))
except gpu_lease.LeaseTimeout:
    print("timeout", flush=True)
    sys.exit(3)
print(lease.gpu.index, lease.slot, flush=True)
sys.stdin.read()
"""


class Holder:
    def __init__(self, folder: Path, count: int, share: int = 1, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder), str(count), str(share), str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self, timeout: float = 30) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "no answer from the agent process"
        return self.proc.stdout.readline().strip()

    def slot(self) -> tuple[int, int]:
        gpu, slot = self.line().split()
        return int(gpu), int(slot)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Holder] = []

    def make(count: int, share: int = 1, timeout: float = 30) -> Holder:
        holder = Holder(tmp_path / "leases", count, share, timeout)
        started.append(holder)
        return holder

    yield make
    for holder in started:
        holder.stop()


def test_n_agents_take_n_distinct_gpus(start) -> None:
    agents = [start(4) for _ in range(4)]
    assert sorted(a.slot() for a in agents) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_a_killed_holder_frees_its_slot_for_a_waiting_agent(start) -> None:
    first, second = start(2), start(2)
    first_slot, second_slot = first.slot(), second.slot()
    assert {first_slot, second_slot} == {(0, 0), (1, 0)}
    third = start(2)
    assert third.line() == "waiting"  # wait mode: every GPU is taken
    os.kill(second.proc.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops the flock
    second.proc.wait(timeout=10)
    assert third.slot() == second_slot


def test_share_mode_spreads_n_agents_per_gpu_evenly(start) -> None:
    agents = [start(2, share=2) for _ in range(4)]
    assert sorted(a.slot() for a in agents) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_auto_share_follows_the_smallest_gpus_memory(tmp_path: Path) -> None:
    gib = 2**30
    assert auto_share(simulated(2, 141 * gib)) == 8  # H200: capped
    assert auto_share(simulated(1, 80 * gib)) == 5  # H100
    assert auto_share(simulated(1, 12 * gib)) == 1  # a small card: a GPU to itself
    assert auto_share([*simulated(1, 80 * gib), Gpu(1, "b", 40 * gib)]) == 2
    # Under `auto`, an 80 GiB GPU takes five agents and the sixth waits.
    gpus = simulated(1, 80 * gib)
    said: list[str] = []
    for slot in range(5):
        assert lease_device(tmp_path, None, gpus, log=said.append) == "cuda:0"
        assert f"slot {slot} of 5" in said[-1]
    assert try_acquire(tmp_path, gpus, auto_share(gpus)) is None
    while gpu_lease._HELD:  # lease_device keeps its leases for the process's life
        gpu_lease._HELD.pop().release()


def test_gpu_share_option_takes_a_number_or_auto(tmp_path: Path) -> None:
    for bad in ("0", "-2", "many", "1.5"):
        proc = subprocess.run(
            ["kmnist-sweep", "agent", "x", "--gpu-share", bad],
            capture_output=True,
            text=True,
            check=False,
        )
        assert_one_line_error(proc, "--gpu-share", "a whole number >= 1 or auto")


def test_more_agents_than_slots_wait_then_time_out(start) -> None:
    holder = start(1)
    assert holder.slot() == (0, 0)
    late = start(1, timeout=0.5)
    assert late.line() == "waiting"
    assert late.line() == "timeout"
    assert late.proc.wait(timeout=10) == 3


def test_in_process_leases_and_release(tmp_path: Path) -> None:
    gpus = simulated(2)
    a = try_acquire(tmp_path, gpus)
    b = try_acquire(tmp_path, gpus)
    assert a and b and {a.device, b.device} == {"cuda:0", "cuda:1"}
    assert try_acquire(tmp_path, gpus) is None
    assert f"pid {os.getpid()} " in holders(tmp_path)[a.path.name]
    a.release()
    c = try_acquire(tmp_path, gpus)
    assert c is not None and c.gpu == a.gpu
    with pytest.raises(LeaseTimeout, match="stayed taken"):
        acquire(tmp_path, gpus, timeout=0.1, poll=0.02)
    for lease in (b, c):
        lease.release()


def test_slot_order_fills_every_gpu_before_doubling_up() -> None:
    order = [(g.index, s) for g, s in gpu_lease.slot_order(simulated(3), 2)]
    assert order == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def test_keys_name_the_lock_files_safely(tmp_path: Path) -> None:
    gpu = gpu_lease.Gpu(0, "GPU-1234/abcd")
    lease = try_acquire(tmp_path, [gpu])
    assert lease is not None and lease.path.name == "gpu-GPU-1234_abcd.slot0.lock"
    lease.release()


def test_lease_device_on_a_cpu_host_is_none(tmp_path: Path) -> None:
    assert lease_device(tmp_path, gpus=[], log=lambda _: None) is None


def test_lease_device_holds_a_gpu_for_the_process(tmp_path: Path) -> None:
    lines: list[str] = []
    assert lease_device(tmp_path, gpus=simulated(1), log=lines.append) == "cuda:0"
    assert lines == ["leased GPU 0 (slot 0 of 1, gpu-0.slot0.lock)"]
    assert try_acquire(tmp_path, simulated(1)) is None  # held until this process exits
    gpu_lease._HELD.pop().release()


def test_lease_device_waiting_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`docker stop` while an agent waits for a GPU: exit 0 at once, not after the grace."""
    code = (
        "import sys; from pathlib import Path; from kmnist.agent import gpu_lease\n"
        "held = gpu_lease.try_acquire(Path(sys.argv[1]), gpu_lease.simulated(1))\n"
        "gpu_lease.lease_device(Path(sys.argv[1]), gpus=gpu_lease.simulated(1))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert "waiting for one to free" in proc.stdout.readline()
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - start < 5
    proc.stdout.close()


def test_agent_with_a_lease_dir_on_a_cpu_host_runs_on_the_cpu(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "method: random\nmetric: {name: val/accuracy, goal: maximize}\nrun_cap: 1\n"
        "parameters:\n  model: {value: knn}\n  train_size: {value: 1000}\n  k: {values: [3]}\n"
    )
    env = {
        **os.environ,
        "KMNIST_SWEEP_STORAGE": str(tmp_path / "sweeps.journal"),
        "KMNIST_DATA_DIR": str(kmnist_dir),
        "KMNIST_GPU_LEASE_DIR": str(tmp_path / "leases"),
    }
    cli = [sys.executable, "-m", "kmnist.cli"]
    created = subprocess.run(
        [*cli, "create", str(spec), "--backend", "optuna"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    agent = subprocess.run(
        [*cli, "agent", created.stdout.strip(), "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert agent.returncode == 0, agent.stderr
    assert "trial 0: completed" in agent.stderr
    assert not (tmp_path / "leases").exists()  # no GPU here: nothing leased, the CPU used


def test_local_gpus_are_keyed_by_uuid(monkeypatch) -> None:
    """Replicas may number GPUs differently (CUDA_VISIBLE_DEVICES): the UUID names the lock."""
    import torch

    class Props:
        def __init__(self, i: int) -> None:
            self.uuid = f"GPU-{i}aa"
            self.total_memory = (i + 1) * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", Props)
    assert gpu_lease.local_gpus() == [
        gpu_lease.Gpu(0, "GPU-0aa", 2**30),
        gpu_lease.Gpu(1, "GPU-1aa", 2 * 2**30),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_lease.local_gpus() == []


def test_lease_device_on_gpus_makes_the_leased_gpu_current(monkeypatch, tmp_path: Path) -> None:
    import torch

    current: list[int] = []
    monkeypatch.setattr(gpu_lease, "local_gpus", lambda: simulated(2))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    held = try_acquire(tmp_path, simulated(2))  # another agent holds GPU 0
    assert lease_device(tmp_path, log=lambda _: None) == "cuda:1"
    assert current == [1]  # nothing opens a context on GPU 0 by asking for the current GPU
    gpu_lease._HELD.pop().release()
    held.release()
