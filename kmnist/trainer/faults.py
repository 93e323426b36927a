"""Failures of where a trial runs, told from failures of what it is, from the exception caught.

A trial that runs out of memory or loses its device says nothing about its config: the trainer
marks its result (`TrialResult.device_fault`) so the agent runs it again and spares run_cap.
The kind is read from the exception when it is caught, never from a reason string afterwards
(a config error or a user's message that mentions memory is not a memory fault).

Out of memory: `torch.OutOfMemoryError` (CUDA, MPS), Python's `MemoryError` (numpy, the
interpreter), and the CPU allocator's refusal, which torch raises as a bare RuntimeError; that
one, and the device errors torch raises untyped (cuDNN, cuBLAS, the driver), are told by
torch's own wording of the exception in hand. `torch.AcceleratorError` is what CUDA_CHECK
raises (an illegal access, a GPU lost or reset): the device's context is gone.
"""

from __future__ import annotations

import torch

from kmnist.contract import DeviceFault, TrialResult
from kmnist.errors import first_line

# c10's `enforce fail at alloc_cpu.cpp: ... DefaultCPUAllocator: can't allocate memory`.
CPU_ALLOCATOR_REFUSED = "DefaultCPUAllocator: can't allocate memory"
# Device failures torch raises as RuntimeError (or AssertionError) with no type of their own.
DEVICE_WORDS = (
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


def device_fault(exc: BaseException) -> DeviceFault | None:
    """'memory' or 'device' when `exc` is a failure of the device (or host) a trial ran on."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return "memory"
    if isinstance(exc, torch.AcceleratorError):
        return "device"
    if isinstance(exc, RuntimeError | AssertionError):
        text = str(exc)
        if CPU_ALLOCATOR_REFUSED in text:
            return "memory"
        if any(words in text for words in DEVICE_WORDS):
            return "device"
    return None


def faulted(
    kind: DeviceFault, device: torch.device | str | None, exc: BaseException
) -> TrialResult:
    """The failed result of a trial whose device failed it."""
    where = device or "the default device"
    if kind == "memory":
        reason = f"out of memory on {where} ({type(exc).__name__}: {first_line(exc)})"
    else:
        reason = f"{type(exc).__name__}: {first_line(exc)}"
    return TrialResult("failed", reason=reason, device_fault=kind)
