"""The metric names the trainer declares are exactly the keys a real trial logs."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kmnist.trainer import metrics, train

TINY = {"train_size": 600, "val_fraction": 0.02, "epochs": 2, "batch_size": 100}


class Recorder:
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def report(self, epoch: int, logged: Mapping[str, float]) -> bool:
        self.epochs.append(dict(logged))
        return False


@pytest.mark.parametrize(
    ("config", "per_epoch"),
    [
        ({"model": "cnn", "l1_size": 4, "l2_size": 8, "fc1_size": 16, **TINY}, "NETWORK_EPOCH"),
        ({"model": "deep_cnn", "depth": 1, "width": 4, **TINY}, "NETWORK_EPOCH"),
        ({"model": "knn", "train_size": 600, "val_fraction": 0.02}, "KNN_EPOCH"),
    ],
    ids=["cnn", "deep_cnn", "knn"],
)
def test_a_real_trial_logs_the_declared_names(
    config: dict, per_epoch: str, kmnist_dir: object
) -> None:
    recorder = Recorder()
    result = train.run(config, recorder, device="cpu")
    assert result.status == "completed", result.reason
    declared = getattr(metrics, per_epoch)
    assert recorder.epochs and all(list(e) == list(declared) for e in recorder.epochs)
    assert result.history == recorder.epochs
    assert list(result.summary) == [*metrics.SUMMARY]


def test_objectives_are_logged_and_never_the_test_set() -> None:
    logged = {*metrics.NETWORK_EPOCH, *metrics.KNN_EPOCH, *metrics.SUMMARY}
    assert set(metrics.OBJECTIVES) == logged - set(metrics.TEST)
    assert metrics.OBJECTIVES[0] == metrics.VAL_ACCURACY
    assert metrics.LR in metrics.OBJECTIVES  # the hand-kept copy in validate missed it
