"""GPU leasing: each agent holds one GPU slot through an exclusive lock in a shared folder.

One lock file per slot (`gpu-<key>.slot<k>.lock`) in a folder every agent of the host sees (a
Docker volume, a node-local dir). The lock is an flock, which the kernel drops when its holder
dies however it dies (kill -9, OOM killer, container stopped), so a slot frees itself and there
is nothing to clean up. N agents on an N-GPU host take N different GPUs, with no
CUDA_VISIBLE_DEVICES set by hand.

More agents than GPUs: `share` sets how many agents a GPU takes (1: a GPU to itself; N: N trials
per GPU, filled evenly; `auto`: as many as the smallest GPU's memory holds, `auto_share`); an
agent that finds every slot taken waits for one to free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmnist.errors import UserError

LEASE_DIR_ENV = "KMNIST_GPU_LEASE_DIR"
SHARE_ENV = "KMNIST_GPU_SHARE"
POLL_SECONDS = 2.0
# `--gpu-share auto`: one trial per this much GPU memory, at most MAX_AUTO_SHARE per GPU. A KMNIST
# trial holds its CUDA context (~0.5 GiB), the dataset (47 MB) and a net of at most a few million
# parameters with its activations: a generous budget, not a measurement; bench/gpu.sh times
# shares 1, 4 and 8, the figures to set it by once a GPU is lent.
TRIAL_MEMORY = 16 * 2**30
MAX_AUTO_SHARE = 8

_HELD: list[Lease] = []  # leases this process keeps until it exits


@dataclass(frozen=True)
class Gpu:
    index: int  # as this process numbers it: cuda:<index>
    key: str  # the same in every agent of the host, whatever each one's CUDA_VISIBLE_DEVICES
    memory: int = 0  # bytes; 0 where unknown (simulated slots)


@dataclass
class Lease:
    gpu: Gpu
    slot: int
    path: Path
    fd: int

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu.index}"

    def release(self) -> None:
        # The file stays: unlinking it would let a late opener lock an orphaned inode.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeaseTimeout(UserError):
    """Every GPU slot stayed taken for the whole wait."""


def simulated(count: int, memory: int = 0) -> list[Gpu]:
    """`count` device slots with no GPU behind them: tests, dry runs."""
    return [Gpu(i, str(i), memory) for i in range(count)]


def auto_share(gpus: Sequence[Gpu]) -> int:
    """Agents per GPU for `--gpu-share auto`: what the smallest GPU's memory holds, so every
    agent of the host (they all see the same GPUs) arrives at the same number of slots."""
    smallest = min((gpu.memory for gpu in gpus), default=0)
    return max(1, min(MAX_AUTO_SHARE, smallest // TRIAL_MEMORY))


def local_gpus() -> list[Gpu]:
    """The CUDA GPUs this process sees, keyed by UUID where torch reports one."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        gpus.append(Gpu(i, str(uuid) if uuid else str(i), props.total_memory))
    return gpus


def slot_order(gpus: Sequence[Gpu], share: int) -> list[tuple[Gpu, int]]:
    """Slot 0 of every GPU first, then slot 1 ...: agents spread evenly over the GPUs."""
    return [(gpu, slot) for slot in range(share) for gpu in gpus]


def try_acquire(folder: Path, gpus: Sequence[Gpu], share: int = 1) -> Lease | None:
    """Take the first free slot, or None if every slot is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    for gpu, slot in slot_order(gpus, share):
        path = folder / f"gpu-{_safe(gpu.key)}.slot{slot}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _write_holder(fd)
        return Lease(gpu, slot, path, fd)
    return None


def acquire(
    folder: Path,
    gpus: Sequence[Gpu],
    share: int = 1,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    on_wait: Callable[[], None] | None = None,
) -> Lease:
    """Take a free slot, waiting (forever, or up to `timeout` s) while every slot is taken."""
    if not gpus:
        raise UserError("no GPU to lease")
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while (lease := try_acquire(folder, gpus, share)) is None:
        if deadline is not None and time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"every GPU slot in {folder} stayed taken for {timeout:g} s "
                f"({len(gpus)} GPU(s) x {share} agent(s) each); raise {SHARE_ENV} to share GPUs"
            )
        if not waited and on_wait:
            on_wait()
        waited = True
        time.sleep(poll)
    return lease


def holders(folder: Path) -> dict[str, str]:
    """Lock file name -> what its holder wrote (pid, host), for the slots held right now."""
    held = {}
    for path in sorted(folder.glob("gpu-*.lock")):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held[path.name] = path.read_text(encoding="utf-8").strip()
        finally:
            os.close(fd)
    return held


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


# -- the agent's side --------------------------------------------------------------------------
def lease_device(
    folder: Path,
    share: int | None = 1,
    gpus: Sequence[Gpu] | None = None,
    log: Callable[[str], None] = print,
) -> str | None:
    """The device of a slot leased for this process's lifetime; None on a host with no GPU.
    `share` None: `auto_share`."""
    real = gpus is None
    gpus = local_gpus() if gpus is None else gpus
    if not gpus:
        return None  # a CPU-only host just uses the CPU
    share = auto_share(gpus) if share is None else share

    def waiting() -> None:
        log(f"every GPU slot in {folder} is taken: waiting for one to free")

    with _exit_on_sigterm():  # `docker stop` while waiting: leave at once, and cleanly
        lease = acquire(folder, gpus, share, on_wait=waiting)
    _HELD.append(lease)
    if real:  # code that asks for "the current GPU" must not open a context on GPU 0
        import torch

        torch.cuda.set_device(lease.gpu.index)
    log(f"leased GPU {lease.gpu.index} (slot {lease.slot} of {share}, {lease.path.name})")
    return lease.device


@contextlib.contextmanager
def _exit_on_sigterm() -> Any:
    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    try:  # SIGHUP too: a closed terminal, as the agent loop treats it
        previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: the caller handles signals
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
