"""The training loop on real KMNIST subsets: it learns, reports, stops, and fails cleanly."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

from kmnist.trainer import train
from kmnist.trainer.augment import augment
from kmnist.trainer.params import ConfigError, resolve

SMALL = {"train_size": 3000, "val_fraction": 0.05, "batch_size": 64}


class Recorder:
    def __init__(self, stop_at: int | None = None) -> None:
        self.reports: list[tuple[int, dict]] = []
        self.stop_at = stop_at

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        self.reports.append((epoch, dict(metrics)))
        return epoch == self.stop_at


@pytest.mark.slow
def test_starter_cnn_learns_on_a_real_subset() -> None:
    rec = Recorder()
    result = train.run({"model": "cnn", "epochs": 3, **SMALL}, rec, device="cpu")
    assert result.status == "completed", result.reason
    assert [epoch for epoch, _ in rec.reports] == [1, 2, 3]
    losses = [m["train/loss"] for _, m in rec.reports]
    assert losses[-1] < losses[0] * 0.8
    assert result.summary["val/best_accuracy"] > 0.75  # chance is 0.10
    assert result.summary["test/accuracy"] > 0.55  # the test set is harder than validation
    assert result.summary["kmnist_val_acc"] == result.summary["test/accuracy"]
    assert result.summary["epochs"] == 3
    assert result.summary["parameters"] == 1_199_882  # the starter network's size
    for key in ("epoch", "train/loss", "val/loss", "val/accuracy", "lr", "epoch_time"):
        assert key in rec.reports[0][1]


def test_deep_cnn_with_augmentation_and_schedule_learns() -> None:
    config = {
        "model": "deep_cnn",
        "depth": 2,
        "width": 16,
        "epochs": 2,
        "schedule": "onecycle",
        "lr": 0.01,
        "optimizer": "adamw",
        "aug_translate": 0.1,
        "aug_rotate": 10,
        "aug_scale": 0.1,
        "aug_erasing": 0.5,
        "label_smoothing": 0.1,
        **SMALL,
    }
    result = train.run(config, device="cpu")
    assert result.status == "completed", result.reason
    assert result.summary["val/best_accuracy"] > 0.5


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adadelta", 1.0), ("adamw", 3e-3)])
@pytest.mark.parametrize("schedule", ["none", "cosine"])
def test_every_optimizer_and_schedule_trains(optimizer: str, lr: float, schedule: str) -> None:
    config = {
        "model": "cnn",
        "epochs": 1,
        "optimizer": optimizer,
        "lr": lr,
        "schedule": schedule,
        "nesterov": True,
        "l1_size": 8,
        "l2_size": 8,
        "fc1_size": 16,
        **SMALL,
        "train_size": 2000,
        "batch_size": 16,
    }
    result = train.run(config, device="cpu")
    assert result.status == "completed"
    assert result.history[0]["train/loss"] < 2.25  # below chance level, ln(10) = 2.30
    assert result.summary["val/accuracy"] > 0.3


def test_reporter_stop_ends_the_trial_cleanly_and_still_scores_test() -> None:
    rec = Recorder(stop_at=1)
    result = train.run(
        {"model": "cnn", "epochs": 5, **SMALL, "train_size": 1000}, rec, device="cpu"
    )
    assert result.status == "stopped"
    assert len(result.history) == 1 and len(rec.reports) == 1
    assert 0 < result.summary["test/accuracy"] <= 1


def test_divergence_is_a_failure_with_a_reason_not_a_crash() -> None:
    config = {"model": "cnn", "epochs": 3, "optimizer": "sgd", "lr": 1e12, **SMALL}
    result = train.run(config, device="cpu")
    assert result.status == "failed"
    assert "loss is" in result.reason and ("nan" in result.reason or "inf" in result.reason)


def test_knn_trial_reports_one_epoch() -> None:
    rec = Recorder()
    result = train.run({"model": "knn", "k": 3, **SMALL}, rec, device="cpu")
    assert result.status == "completed"
    assert [epoch for epoch, _ in rec.reports] == [1]
    assert rec.reports[0][1]["val/accuracy"] > 0.8
    assert result.summary["test/accuracy"] > 0.6


@pytest.mark.slow
def test_same_seed_same_result_other_seed_other_result() -> None:
    config = {"model": "cnn", "epochs": 1, "precision": "fp32", **SMALL, "train_size": 1000}
    first = train.run(config, device="cpu").summary["val/loss"]
    assert train.run(config, device="cpu").summary["val/loss"] == first
    assert train.run({**config, "seed": 1}, device="cpu").summary["val/loss"] != first


def test_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        train.run({"model": "cnn", "epoch": 3})


def test_augmentation_keeps_shape_and_changes_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 28, 28)
    config = resolve({"aug_translate": 0.1, "aug_rotate": 15, "aug_erasing": 1.0})
    out = augment(images, config, gen)
    assert out.shape == images.shape
    assert not torch.equal(out, images)
    erased_only = augment(images, resolve({"aug_erasing": 1.0}), gen)
    assert ((erased_only == 0) & (images != 0)).flatten(1).any(1).all()  # a box in each image


def test_zero_affine_is_the_identity() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 28, 28)
    from kmnist.trainer.augment import random_affine

    torch.testing.assert_close(random_affine(images, 0.0, 0.0, 0.0, gen), images)


def test_elastic_distortion_moves_pixels_no_further_than_its_bound() -> None:
    from kmnist.trainer.augment import elastic_field, random_affine

    gen = torch.Generator().manual_seed(0)
    dots = torch.zeros(64, 1, 28, 28)
    dots[:, :, 14, 14] = 1.0
    field = elastic_field(dots, 2.0, gen) * 14  # grid units -> pixels (28 / 2)
    assert field.abs().max() <= 2.0 + 1e-5 and field.abs().max() > 1.0
    bent = random_affine(dots, 0.0, 0.0, 0.0, gen, elastic=2.0)
    rows, cols = torch.nonzero(bent[:, 0] > 0, as_tuple=True)[1:]
    assert ((rows - 14).abs().max() <= 3) and ((cols - 14).abs().max() <= 3)  # 2 + interpolation
    assert not torch.equal(bent, dots)
    moved = [not torch.equal(b, dots[0]) for b in bent]
    assert sum(moved) == len(moved)  # each image gets its own bend


def test_seed_leaves_the_validation_split_alone_split_seed_moves_it() -> None:
    config = {"model": "knn", "k": 1, **SMALL}
    first = train.run(config, device="cpu").outputs
    reseeded = train.run({**config, "seed": 5}, device="cpu").outputs
    resplit = train.run({**config, "split_seed": 5}, device="cpu").outputs
    assert np.array_equal(first.val_index, reseeded.val_index)
    assert not np.array_equal(first.val_index, resplit.val_index)


def test_stroke_augmentation_thins_or_thickens_each_picked_image() -> None:
    from kmnist.trainer.augment import random_stroke

    gen = torch.Generator().manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 8:20, 12:16] = 1.0  # a 4-pixel-wide stroke
    torch.testing.assert_close(random_stroke(images, 0.0, gen), images)
    out = random_stroke(images, 1.0, gen)
    assert out.min() >= 0 and out.max() <= 1
    ink = out.sum((1, 2, 3)) - images.sum((1, 2, 3))
    assert (ink != 0).all()  # every image picked, each changed
    assert (ink < 0).any() and (ink > 0).any()  # some thinned, some thickened
    assert (out[:, :, 10:18, 13:15] == 1).all()  # the stroke's core survives a one-pixel thinning
