"""What crosses between the trainer wing and the sweep wing: a reporter in, a result out.

The trainer reports each epoch to a `Reporter` and returns a `TrialResult`; the agent turns
those into calls on a `Sweep`. Neither wing imports the other: both import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class Reporter(Protocol):
    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Receive one epoch's metrics; return True to stop the trial now."""
        ...


# Why a trial failed when the cause is where it ran, not what it was: "memory" (the device or
# host ran out of memory), "device" (the device itself failed: a CUDA error, a lost GPU).
DeviceFault = Literal["memory", "device"]


@dataclass
class TrialResult:
    status: str  # "completed", "stopped" (the reporter asked) or "failed"
    summary: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    reason: str = ""  # why it failed, for people
    # Set by the trainer from the exception it caught, never read back from `reason`: such a
    # failure says nothing of the config, so the agent runs the trial again and spares run_cap.
    device_fault: DeviceFault | None = None
    # Weights and class probabilities (kmnist.trainer.artifacts.TrialOutputs): the agent may
    # keep them on disk; they are never sent to a sweep engine.
    outputs: Any = None
