"""One trial as one W&B run: config at init, one `log` per epoch, the result as its summary.

One `log` call per epoch matters: W&B's hyperband counts logged values, not steps. Works online
or with `WANDB_MODE=offline` (the run is written under ./wandb and can be synced later).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kmnist.train import TrialResult


class WandbRun:
    def __init__(
        self,
        config: Mapping[str, Any],
        project: str = "kmnist-sweep",
        group: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        import wandb  # imported here: importing wandb costs about a second

        self.run = wandb.init(
            project=project,
            config=dict(config),
            group=group,
            job_type=str(config.get("model", "train")),
            tags=list(tags),
        )

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        self.run.log(dict(metrics))
        return False

    def finish(self, result: TrialResult) -> None:
        self.run.summary.update(result.summary)
        if result.reason:
            self.run.summary["failure_reason"] = result.reason
        self.run.finish(exit_code=1 if result.status == "failed" else 0)
