"""What a figure was measured on: the CPU model, its matrix units, threads, torch, the load."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

MATRIX_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_model() -> str:
    """`lscpu`'s Model name (the processor string where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    names = [
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
    ]
    return names[0] if names else platform.machine()


def cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return set()
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def describe() -> dict:
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "amx": {"amx_int8", "amx_bf16"} <= flags,
        "matrix_flags": [f for f in MATRIX_FLAGS if f in flags],
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_at_start": os.getloadavg(),  # other jobs on a shared machine skew the seconds
    }


def headline(machine: dict) -> str:
    amx = "AMX (int8, bf16)" if machine["amx"] else "no AMX"
    flags = ", ".join(machine["matrix_flags"]) or "no VNNI/BF16"
    return (
        f"{machine['cpu']}: {amx}; {flags}; {machine['cpus']} CPUs, {machine['torch_threads']} "
        f"torch threads, torch {machine['torch']}; load {machine['load_at_start'][0]:.2f}"
    )


def save_record(record: dict, out: Path) -> Path:
    """Write a long run's record as out/<benchmark>-<time>.json (each run keeps its own file)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{record['benchmark']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2))
    return path
