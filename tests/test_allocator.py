"""Freed tensor memory is reused, not page-faulted in anew each training step (glibc)."""

import platform
import resource

import pytest
import torch

from kmnist.trainer.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_freed_activation_sized_block_is_reused_without_page_faults() -> None:
    assert keep_freed_memory()
    torch.zeros(8 << 20, dtype=torch.uint8)  # 8 MiB, a starter-CNN activation's size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.zeros(8 << 20, dtype=torch.uint8)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 20 * 2048 / 10  # an mmap per block would fault its 2,048 pages each time
