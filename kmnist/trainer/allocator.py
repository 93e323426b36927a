"""Keep freed tensor memory in the process instead of handing it back to the kernel.

PyTorch's CPU allocator is the C library's malloc. glibc serves a block over its mmap threshold
(128 KiB at start) with a fresh mmap and unmaps it on free, so each training step page-faults
and zeroes its activations and gradients anew: on the starter CNN that is the 1.3 ms of a
7 MB `fill_` in every step. Raising the mmap threshold to its 32 MiB maximum and the trim
threshold to 1 GiB lets freed blocks be reused as they are (what jemalloc or tcmalloc, which
Intel's PyTorch guide preloads, do on their own). The cost is a resident set that stays at its
peak: an agent's process is a trainer, and its peak comes back every step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, their own allocator
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
