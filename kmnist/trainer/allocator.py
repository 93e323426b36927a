"""Keep freed tensor memory in the process instead of handing it back to the kernel.

PyTorch's CPU allocator is the C library's malloc. glibc serves a block over its mmap threshold
with a fresh mmap and gives freed memory at the top of its heap back past its trim threshold;
its own adjustment of the two does not keep up with a training step's mix of blocks. So each
step page-faulted and zeroed its activations and gradients anew: 2,415 page faults a step of
the starter CNN, 10 with the thresholds raised to 32 MiB (the mmap maximum) and 1 GiB (Xeon,
2026-12-02). jemalloc and tcmalloc, which Intel's PyTorch guide preloads, reuse blocks on their
own. The cost is a resident set that stays at its peak: an agent's process is a trainer, and
its peak comes back every step.
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
