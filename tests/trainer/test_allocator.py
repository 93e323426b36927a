"""Freed tensor memory is reused, not page-faulted in anew each training step (glibc)."""

import platform
import subprocess
import sys

import pytest

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e

# Starter-CNN steps in a fresh process (glibc's thresholds are process-wide); prints the page
# faults of a step once warm. Without keep_freed_memory() this printed 2,415 (Xeon, 2026-12-02).
STEPS = """
import resource, sys, torch, torch.nn.functional as F
from kmnist.trainer.allocator import keep_freed_memory
from kmnist.trainer.models import build_network
from kmnist.trainer.params import resolve
assert keep_freed_memory()
torch.manual_seed(0)
model = build_network(resolve({"model": "cnn"}))
optimizer = torch.optim.Adam(model.parameters())
x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
def step():
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_training_step_reuses_freed_memory_instead_of_faulting_it_in() -> None:
    out = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, check=True)
    faults_per_step = float(out.stdout)
    assert faults_per_step < 200  # an mmap per activation faults in about 1,800 pages a step
