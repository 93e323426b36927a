"""The starter CNN's faster layout computes the benchmark's network; its dropout keeps layouts."""

from __future__ import annotations

import torch
from torch import nn

from kmnist.trainer.models import build_network
from kmnist.trainer.models.cnn import Dropout
from kmnist.trainer.params import resolve


def _keras_order(net: nn.Sequential) -> nn.Sequential:
    """The benchmark's order, conv-ReLU-maxpool, with `net`'s own weights, in plain NCHW."""
    layers = list(net)
    layers[3], layers[4] = layers[4], layers[3]
    return nn.Sequential(*layers).to(memory_format=torch.contiguous_format)


def test_relu_after_pooling_gives_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    config = resolve({"model": "cnn", "dropout_1": 0.0, "dropout_2": 0.0})
    ours = build_network(config).double()
    reference = _keras_order(
        build_network(config).double().to(memory_format=torch.contiguous_format)
    )
    reference.load_state_dict(ours.state_dict())  # no parameter moved: the same keys
    assert isinstance(ours[3], nn.MaxPool2d) and isinstance(reference[3], nn.ReLU)
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    y_ours, y_ref = ours(x), reference(x)
    torch.testing.assert_close(y_ours, y_ref, rtol=1e-12, atol=1e-12)
    y_ours.square().sum().backward()
    y_ref.square().sum().backward()
    for (name, a), (_, b) in zip(
        ours.named_parameters(), reference.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_convs_run_channels_last() -> None:
    net = build_network(resolve({"model": "cnn"}))
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    hidden = net[:3](torch.rand(4, 1, 28, 28))
    assert hidden.is_contiguous(memory_format=torch.channels_last)


def test_dropout_mask_follows_a_channels_last_input() -> None:
    drop = Dropout(0.25).train()
    x = torch.rand(64, 32, 12, 12).add_(0.5).to(memory_format=torch.channels_last)
    torch.manual_seed(1)
    out = drop(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(out[kept], x[kept] * (256 / 192))
    # the same mask as an NCHW tensor holding the same bytes in the same order
    torch.manual_seed(1)
    nhwc = drop(x.permute(0, 2, 3, 1).contiguous())
    assert torch.equal(nhwc.permute(0, 3, 1, 2), out)
