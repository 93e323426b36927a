"""The device an agent trains on: checked before the first trial, and told apart from the trial
when a trial fails.

`check` turns `--device` into one line and exit code 2 when the device is not there (no CUDA,
`cuda:7` on a one-GPU host, `mps` off a Mac, `banana`), before any trial is taken.

`failure_kind` tells a trial that failed because of its device (out of memory, a CUDA error)
from one that failed because of its configuration. The first says nothing about the config:
the agent queues the trial to run again, so it does not use up the sweep's run_cap, and stops
once the device keeps failing.
"""

from __future__ import annotations

import torch

from kmnist.errors import UserError, first_line

DEVICES = "cpu, cuda, cuda:N or mps"
# How out of memory reads: the trainer's own result, torch's CUDA/MPS errors, the CPU allocator.
MEMORY_MARKERS = ("out of memory", "can't allocate memory", "OutOfMemoryError")
# A device that fails under a trial: its CUDA context is lost for every trial after it.
DEVICE_MARKERS = (
    "AcceleratorError",
    "CUDA error",
    "CUDA driver",
    "CUDNN_STATUS",
    "CUBLAS_STATUS",
    "cuDNN error",
    "no CUDA GPUs",
    "not compiled with CUDA",
    "invalid device ordinal",
    "NVIDIA driver",
    "device-side assert",
    "HIP error",
    "MPS backend",
)


def check(device: str | None, option: str = "--device") -> str | None:
    """`device` when this host can train on it (None: the best available); else UserError."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"{option} {device!r}: not a device; expected {DEVICES}") from None
    if dev.type == "cuda":
        _check_cuda(device, dev, option)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{option} {device}: MPS is not available on this host; {_fallback()}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{option} {device}: {dev.type} devices are not supported; use {DEVICES}")
    try:  # present is not usable: a busy or broken GPU fails here, not in the first trial
        float((torch.ones(2, device=dev) * 2).sum())
    except (RuntimeError, AssertionError, NotImplementedError) as exc:
        raise UserError(f"{option} {device}: cannot compute on it: {first_line(exc)}") from None
    return device


def _check_cuda(device: str, dev: torch.device, option: str) -> None:
    if not torch.backends.cuda.is_built():
        raise UserError(f"{option} {device}: this torch is built without CUDA; {_fallback()}")
    if not torch.cuda.is_available():
        raise UserError(f"{option} {device}: no CUDA GPU is visible on this host; {_fallback()}")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise UserError(
            f"{option} {device}: this host has {count} CUDA GPU(s), "
            f"cuda:0 to cuda:{count - 1} (CUDA_VISIBLE_DEVICES renumbers them)"
        )


def _fallback() -> str:
    return "leave --device out to use the best device there is, or give --device cpu"


def failure_kind(reason: str) -> str | None:
    """'memory' or 'device' when a trial failed because of its device, else None."""
    if any(marker in reason for marker in MEMORY_MARKERS):
        return "memory"
    if any(marker in reason for marker in DEVICE_MARKERS):
        return "device"
    return None
