"""The device an agent trains on: checked before the first trial, and told apart from the trial
when a trial fails.

`check` turns `--device` into one line and exit code 2 when the device is not there (no CUDA,
`cuda:7` on a one-GPU host, `mps` off a Mac, `banana`), before any trial is taken.

A trial that fails because of its device mid-run (out of memory, a CUDA error) is marked so
by the trainer (`kmnist.trainer.faults`), where the exception is caught.
"""

from __future__ import annotations

import torch

from kmnist.errors import UserError, first_line

DEVICES = "cpu, cuda, cuda:N or mps"


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
