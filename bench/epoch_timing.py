"""One trainer epoch timed, in this process or in a fresh one (as a user's script runs it)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from kmnist.trainer import data as kdata
from kmnist.trainer import train


class EpochTimer:
    """A reporter that keeps the last epoch's seconds and never stops the run."""

    def report(self, epoch: int, metrics: dict) -> bool:
        self.seconds = metrics["epoch_time"]
        return False


def trainer_epoch_seconds(config: dict[str, Any], d: kdata.Kmnist) -> float:
    """Seconds of one epoch of `config` on the CPU (training and validation, not the test)."""
    timer = EpochTimer()
    train.run({**config, "epochs": 1}, timer, device="cpu", data=d)
    return timer.seconds


def in_fresh_process(script: str, variant: str) -> float:
    """`python script --one variant` in a new interpreter; it prints its seconds last."""
    command = [sys.executable, script, "--one", variant]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])
