"""Agent processes on this host: one per GPU (`agent --gpus`), or N on a sweep (`run`).

Each child is `kmnist-sweep agent ...` run by this interpreter (no PATH lookup). Ctrl-C,
SIGTERM or SIGHUP (a closed terminal) while waiting sends each child SIGTERM, so each ends its
trial at its next epoch and queues it again, and the parent waits for them to do so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kmnist.errors import UserError

STORAGE_ENV = "KMNIST_SWEEP_STORAGE"  # the `--storage` option's variable


def gpu_ids(value: str) -> list[str] | None:
    """`--gpus` as GPU ids: 'all' -> None (every GPU there is), '0,2' -> ['0', '2']."""
    if value == "all":
        return None
    ids = [part.strip() for part in value.split(",")]
    if not all(i.isdigit() for i in ids):
        raise UserError(f"--gpus {value!r}: expected 'all' or GPU numbers such as 0,1")
    return ids


def local_devices(gpus: str | None) -> list[str]:
    """The CUDA devices `--gpus` names here; none on a CPU-only host (it just uses the CPU)."""
    if not gpus:
        return []
    ids = gpu_ids(gpus)  # checked first, so a typo is caught on a CPU host too
    import torch

    if not torch.cuda.is_available():
        return []
    if ids is None:
        ids = [str(i) for i in range(torch.cuda.device_count())]
    return [f"cuda:{i}" for i in ids]


def default_agents() -> int:
    """One agent per GPU, or one on a CPU host."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmnist.cli", *args]


def start(commands: Sequence[list[str]], env: Mapping[str, str] | None = None) -> list:
    return [subprocess.Popen(command, env=env) for command in commands]


def per_gpu(devices: Sequence[str], argv: Sequence[str], storage: str | None = None) -> int:
    """`argv` (an `agent` command line) once per device, pinned to it; the worst exit code.

    The storage goes to the children through the environment, never on their command line,
    where any user of the host could read its password.
    """
    return wait_all(start(gpu_commands(devices, argv), storage_env(storage)))


def gpu_commands(devices: Sequence[str], argv: Sequence[str]) -> list[list[str]]:
    """`argv` once per device, pinned to it, less --gpus and --storage."""
    base = without_option(without_option(argv, "--gpus"), "--storage")
    return [cli(*base, "--device", device) for device in devices]


def local_agents(
    sweep_id: str, agents: int, storage: str | None = None, allow_code: bool = False
) -> list:
    """`agents` quiet agent processes on the sweep, sharing this host's cores (allowed to run
    the sweep's own study file when `run` was)."""
    threads = max(1, (os.cpu_count() or 1) // agents)  # oversubscribed cores thrash
    allowed = ["--allow-code"] if allow_code else []
    command = cli("agent", sweep_id, "--quiet", "--threads", str(threads), *allowed)
    return start([command] * agents, storage_env(storage))


def storage_env(storage: str | None) -> dict[str, str]:
    """This environment, with the storage the children use (read by their --storage)."""
    return {**os.environ, **({STORAGE_ENV: storage} if storage else {})}


def without_option(argv: Sequence[str], name: str) -> list[str]:
    """`argv` less `name VALUE` and `name=VALUE`."""
    out, tokens = [], list(argv)
    while tokens:
        token = tokens.pop(0)
        if token == name:
            tokens = tokens[1:]
        elif not token.startswith(f"{name}="):
            out.append(token)
    return out


def terminate(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)


def wait_all(procs: Sequence[subprocess.Popen]) -> int:
    """Wait for every process (Ctrl-C, SIGTERM, SIGHUP: SIGTERM them, wait again); the worst
    exit code."""
    with forwarding_stops(procs):
        try:
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt:
            terminate(procs)
            codes = [p.wait() for p in procs]
    return max(codes, default=0)


@contextlib.contextmanager
def forwarding_stops(procs: Sequence[subprocess.Popen]) -> Iterator[None]:
    """While inside: SIGTERM or SIGHUP to this process is passed on to `procs` as SIGTERM."""

    def forward(signum: int, frame: Any) -> None:
        terminate(procs)

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: the caller handles signals
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
