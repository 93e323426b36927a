"""The residual family and the regularisation / evaluation knobs, on real KMNIST subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine_util import assert_one_line_error, cli

from kmnist.trainer import data as kdata
from kmnist.trainer import train
from kmnist.trainer.augment import mix, random_shift, shift
from kmnist.trainer.ema import WeightEMA
from kmnist.trainer.models import build_network
from kmnist.trainer.params import ConfigError, resolve

TINY = {
    "model": "resnet",
    "width": 8,
    "stages": 2,
    "blocks": 1,
    "dropout": 0.0,
    "optimizer": "sgd",
    "lr": 0.1,
    "nesterov": True,
    "schedule": "onecycle",
    "batch_size": 64,
    "train_size": 3000,
    "val_fraction": 0.05,
}


@pytest.fixture(scope="module")
def kmnist() -> kdata.Kmnist:
    return kdata.load()


@pytest.fixture(scope="module")
def real_batch(kmnist: kdata.Kmnist) -> tuple[torch.Tensor, torch.Tensor]:
    """256 real training images as floats in [0, 1], and their labels."""
    images = torch.from_numpy(kmnist.train_images[:256]).float()[:, None] / 255
    return images, torch.from_numpy(kmnist.train_labels[:256]).long()


# -- the network -----------------------------------------------------------------------------
def test_tiny_resnet_learns_on_a_real_subset(kmnist: kdata.Kmnist) -> None:
    result = train.run({**TINY, "epochs": 3}, device="cpu", data=kmnist)
    assert result.status == "completed", result.reason
    losses = [m["train/loss"] for m in result.history]
    assert losses[-1] < losses[0] * 0.7
    assert result.summary["val/best_accuracy"] > 0.85  # chance is 0.10
    assert result.summary["test/accuracy"] > 0.65  # the test set is harder than validation


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_every_stage_count_gives_ten_logits(stages: int) -> None:
    model = build_network(resolve({"model": "resnet", "width": 4, "stages": stages}))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_the_family_spans_a_cpu_net_and_a_gpu_net() -> None:
    def size(**knobs: object) -> int:
        model = build_network(resolve({"model": "resnet", **knobs}))
        return sum(p.numel() for p in model.parameters())

    small = size(width=16, stages=3, blocks=1)
    wide = size(width=96, stages=3, blocks=2)
    assert small < 600_000 and wide > 10_000_000
    assert size(width=16, se_ratio=0.25) > small  # the gates add parameters
    assert size(width=16, width_growth=1.5) < small


# -- batch mixing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "knobs",
    [
        {"mixup_alpha": 0.4},
        {"cutmix_alpha": 1.0},
        {"mixup_alpha": 0.4, "mixup_prob": 0.5, "cutmix_alpha": 1.0, "cutmix_prob": 0.5},
    ],
)
def test_mixed_soft_labels_keep_label_mass(
    real_batch: tuple[torch.Tensor, torch.Tensor], knobs: dict
) -> None:
    images, labels = real_batch
    cfg = resolve({"model": "resnet", **knobs})
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    for _ in range(10):
        mixed, target = mix(images, labels, cfg, gen, rng, 10)
        assert mixed.shape == images.shape and target.shape == (256, 10)
        torch.testing.assert_close(target.sum(1), torch.ones(256))
        assert (target >= 0).all()
        assert (target.max(1).values < 1).any()  # some rows really are mixed
        assert not torch.equal(mixed, images)


def test_cutmix_weights_are_the_pixel_shares() -> None:
    # Image i is the constant i + 1 with label i: a pixel tells whose it is.
    images = torch.arange(1, 11, dtype=torch.float32)[:, None, None, None].expand(10, 1, 28, 28)
    labels = torch.arange(10)
    cfg = resolve({"model": "resnet", "cutmix_alpha": 1.0})
    gen, rng = torch.Generator().manual_seed(1), np.random.default_rng(1)
    for _ in range(5):
        mixed, target = mix(images, labels, cfg, gen, rng, 10)
        own = (mixed == images).flatten(1).float().mean(1)
        torch.testing.assert_close(target[labels, labels], own)


def test_mixup_weights_are_the_blend() -> None:
    images = torch.arange(1, 11, dtype=torch.float32)[:, None, None, None].expand(10, 1, 28, 28)
    labels = torch.arange(10)
    cfg = resolve({"model": "resnet", "mixup_alpha": 1.0})
    mixed, target = mix(images, labels, cfg, torch.Generator(), np.random.default_rng(2), 10)
    partner = target.clone()
    partner[labels, labels] = 0  # what is left is the other image's weight, at its label
    expected = target[labels, labels] * (labels + 1) + partner.sum(1) * (partner.argmax(1) + 1)
    torch.testing.assert_close(mixed[:, 0, 0, 0], expected.float())


def test_no_mixing_leaves_the_batch_and_hard_labels(
    real_batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = real_batch
    cfg = resolve({"model": "resnet", "mixup_alpha": 0.4, "mixup_prob": 0.0})
    mixed, target = mix(images, labels, cfg, torch.Generator(), np.random.default_rng(0), 10)
    assert mixed is images and target is labels


# -- shifts ----------------------------------------------------------------------------------
def test_shift_moves_whole_pixels_and_fills_zeros() -> None:
    x = torch.rand(2, 1, 28, 28) + 0.1
    down_left = shift(x, 2, -1)
    torch.testing.assert_close(down_left[..., 2:, :27], x[..., :26, 1:])
    assert (down_left[..., :2, :] == 0).all() and (down_left[..., :, 27] == 0).all()
    torch.testing.assert_close(shift(x, 0, 0), x)


def test_random_shift_gives_each_image_one_crisp_offset(
    real_batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images = real_batch[0][:64]
    out = random_shift(images, 2, torch.Generator().manual_seed(0))
    candidates = torch.stack([shift(images, dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)])
    matches = (candidates == out[None]).flatten(2).all(2)  # (25 offsets, 64 images)
    assert matches.any(0).all()  # every image is exactly one of the shifted copies
    assert len(set(matches.float().argmax(0).tolist())) > 5  # offsets differ between images


# -- EMA -------------------------------------------------------------------------------------
def test_ema_weights_differ_from_raw_and_evaluate(
    kmnist: kdata.Kmnist, real_batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    torch.manual_seed(0)
    images, labels = real_batch
    model = build_network(resolve(TINY))
    ema = WeightEMA(model, 0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(30):
        batch = slice(step % 4 * 64, step % 4 * 64 + 64)
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update()
    raw, averaged = model.state_dict(), ema.model.state_dict()
    assert not torch.equal(raw["0.weight"], averaged["0.weight"])
    assert not torch.equal(raw["1.running_mean"], averaged["1.running_mean"])  # BN stats too
    assert all(not p.requires_grad for p in ema.model.parameters())
    cfg = resolve({**TINY, "precision": "fp32"})
    x = torch.from_numpy(kmnist.train_images[256:1256])[:, None]
    y = torch.from_numpy(kmnist.train_labels[256:1256]).long()
    log_proba = train.predict_log_proba(ema.model, cfg, x, torch.device("cpu"))
    torch.testing.assert_close(log_proba.exp().sum(1), torch.ones(1000))
    assert (log_proba.argmax(1) == y).float().mean() > 0.3  # it learned from 256 images


def test_a_trial_with_ema_scores_the_averaged_weights(kmnist: kdata.Kmnist) -> None:
    config = {**TINY, "epochs": 2, "precision": "fp32"}
    raw = train.run(config, device="cpu", data=kmnist)
    averaged = train.run({**config, "ema": 0.99}, device="cpu", data=kmnist)
    assert averaged.status == "completed", averaged.reason
    # the same training run (EMA does not touch it), scored on other weights
    assert averaged.history[0]["train/loss"] == raw.history[0]["train/loss"]
    assert averaged.summary["val/loss"] != raw.summary["val/loss"]
    assert averaged.summary["val/accuracy"] > 0.85


# -- TTA -------------------------------------------------------------------------------------
def test_tta_of_no_views_is_the_plain_prediction(
    real_batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    model = build_network(resolve(TINY)).eval()
    x = (real_batch[0] * 255).to(torch.uint8)
    cfg = resolve({**TINY, "precision": "fp32"})
    got = train.predict_log_proba(model, cfg, x, torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(got, F.log_softmax(model(x.float() / 255), 1))


@pytest.mark.slow
def test_tta_does_not_lower_accuracy_on_a_fixed_model(kmnist: kdata.Kmnist) -> None:
    # One trained model, scored on 4,000 test images without and with 8 shifted views.
    config = resolve({**TINY, "epochs": 3, "precision": "fp32", "aug_shift": 1})
    trained = train.run(config, device="cpu", data=kmnist)
    model = build_network(config)
    model.load_state_dict(trained.outputs.state_dict)
    x = torch.from_numpy(kmnist.test_images[:4000]).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(kmnist.test_labels[:4000]).long()
    cpu = torch.device("cpu")
    before, after = (
        float((train.predict_log_proba(model, {**config, "tta": tta}, x, cpu).argmax(1) == y)
              .float().mean())
        for tta in (0, 8)
    )  # fmt: skip
    whole = train.predict_log_proba(
        model, config, torch.from_numpy(kmnist.test_images)[:, None], cpu
    )
    assert (
        float((whole.argmax(1) == torch.from_numpy(kmnist.test_labels)).float().mean())
        == (trained.summary["test/accuracy"])
    )  # the weights the trial scored
    noise = 2 * math.sqrt(before * (1 - before) / len(y))  # two binomial standard errors
    assert after >= before - noise, (before, after)


# -- bad knobs -------------------------------------------------------------------------------
def test_mixup_and_cutmix_on_every_batch_is_refused() -> None:
    with pytest.raises(ConfigError, match="mixup_prob \\+ cutmix_prob is 2"):
        resolve({"mixup_alpha": 0.2, "cutmix_alpha": 1.0})
    resolve({"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mixup_prob": 0.3, "cutmix_prob": 0.7})
    resolve({"mixup_alpha": 0.0, "cutmix_alpha": 1.0})  # only one of them on: shares are free


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--se_ration=0.25"], ["unknown parameter 'se_ration'", "did you mean 'se_ratio'"]),
        (["--ema=1.5"], ["parameter 'ema'", "[0, 0.99999]", "1.5"]),
        (["--tta=9"], ["parameter 'tta'", "[0, 8]"]),
        (["--stages=0"], ["parameter 'stages'", "[1, 4]"]),
        (["--mixup_prob=1.2"], ["parameter 'mixup_prob'", "[0, 1]"]),
        (
            ["--mixup_alpha=0.2", "--cutmix_alpha=1", "--mixup_prob=1", "--cutmix_prob=1"],
            ["mixup_prob + cutmix_prob is 2", "at most 1"],
        ),
    ],
)
def test_bad_knobs_are_one_line_and_exit_2(args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(cli("train", "--model=resnet", *args), *fragments)


def test_fp32_precision_turns_tf32_off_and_back() -> None:
    train._set_fp32_precision("fp32")
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    train._set_fp32_precision("auto")
    assert torch.backends.cudnn.conv.fp32_precision == train._TORCH_FP32[1]
