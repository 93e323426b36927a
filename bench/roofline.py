"""The machine's measured matmul and conv throughput: the roofline the trainer and kNN are held to.

Matmuls in fp32 (MKL), bf16 (oneDNN; AMX tiles where the CPU has them) and int8 (`_int_mm`, and
oneDNN's quantized linear), at a large square size (the peak) and at the kNN's tile; 3x3 convs
of the starter CNN and of `deep_cnn`, forward and backward, in fp32 and bf16, in the default
(NCHW) and channels-last layouts. Each figure is the median of --repeats timed calls after a
warm-up, in G(FL)OP/s.

    python bench/roofline.py
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import click
import torch
import torch.nn.functional as F
from machine import describe, headline

from kmnist.trainer.models import knn_kernels

MATMULS = {"square 2048": (2048, 2048, 2048), "kNN tile": (256, 784, 15360)}
# (batch, in channels, out channels, input side): the starter CNN's two convs, deep_cnn's first
# block at width 32, and a wider layer for the peak.
CONVS = {
    "starter conv1 1->32 @28": (100, 1, 32, 28),
    "starter conv2 32->64 @26": (100, 32, 64, 26),
    "deep_cnn 32->32 @28 pad1": (128, 32, 32, 28),
    "deep_cnn 64->64 @14 pad1": (128, 64, 64, 14),
}
LAYOUTS = {torch.contiguous_format: "nchw", torch.channels_last: "channels_last"}


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _qlinear_is_native() -> bool:
    """oneDNN's int8 linear runs on a reference path on some CPUs (a Zen 4 EPYC: about 80 MOP/s,
    111 s for one 2048-cube call); the kNN's screen tells, in milliseconds."""
    q = torch.randint(-128, 128, (32 + 256, 784), dtype=torch.int8)
    kernels = ["onednn-int8", "int-mm"]
    seconds = knn_kernels.timings(kernels, q[:32], q[32:], q[32:].float().square().sum(1), 3)
    return seconds["onednn-int8"] <= knn_kernels.SCREEN_MARGIN * seconds["int-mm"]


def _matmul_calls(m: int, k: int, n: int) -> dict[str, Callable[[], object]]:
    a8 = torch.randint(-128, 128, (m, k), dtype=torch.int8)
    b8 = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    af, bf = a8.float(), b8.float()
    ab, bb = af.bfloat16(), bf.bfloat16()
    packed = torch.ops.onednn.qlinear_prepack(b8, None)
    ones, zeros = torch.ones(n), torch.zeros(n, dtype=torch.long)
    calls = {
        "fp32": lambda: af @ bf.T,
        "bf16": lambda: ab @ bb.T,
        "int8 _int_mm": lambda: torch._int_mm(a8, b8.T),
    }
    if _qlinear_is_native():
        calls["int8 onednn qlinear (fp32 out)"] = lambda: torch.ops.onednn.qlinear_pointwise(
            a8, 1.0, 0, packed, ones, zeros, None, 1.0, 0, torch.float32, "none", [], ""
        )
    else:
        print("oneDNN's int8 linear is on a reference path here: not timed", flush=True)
    return calls


def matmul_rates(repeats: int) -> dict[str, dict[str, float]]:
    rates: dict[str, dict[str, float]] = {}
    for label, (m, k, n) in MATMULS.items():
        calls = _matmul_calls(m, k, n)
        ops = 2 * m * k * n
        rates[label] = {name: ops / _median_seconds(c, repeats) / 1e9 for name, c in calls.items()}
    return rates


def _conv_rates(
    shape: tuple[int, int, int, int],
    pad: int,
    dtype: torch.dtype,
    layout: torch.memory_format,
    repeats: int,
) -> tuple[float, float]:
    """(forward, backward) GFLOP/s of one 3x3 conv; backward = input and weight gradients."""
    batch, cin, cout, side = shape
    x = torch.randn(batch, cin, side, side, dtype=dtype).to(memory_format=layout)
    w = torch.randn(cout, cin, 3, 3, dtype=dtype).to(memory_format=layout)
    x.requires_grad_(cin > 1)  # the first layer needs no input gradient
    w.requires_grad_()
    inputs = [t for t in (x, w) if t.requires_grad]
    grad = torch.randn_like(F.conv2d(x, w, padding=pad))

    def forward() -> torch.Tensor:
        return F.conv2d(x, w, padding=pad)

    def both() -> object:
        return torch.autograd.grad(forward(), inputs, grad)

    flops = 2 * batch * cout * (side + 2 * pad - 2) ** 2 * cin * 9
    t_forward, t_both = _median_seconds(forward, repeats), _median_seconds(both, repeats)
    backward = flops * len(inputs) / max(t_both - t_forward, 1e-9)
    return flops / t_forward / 1e9, backward / 1e9


def conv_rates(repeats: int) -> dict[str, dict[str, float]]:
    rates: dict[str, dict[str, float]] = {}
    for label, shape in CONVS.items():
        row: dict[str, float] = {}
        for dtype in (torch.float32, torch.bfloat16):
            for layout, layout_name in LAYOUTS.items():
                name = f"{str(dtype).removeprefix('torch.')} {layout_name}"
                pad = 1 if "pad1" in label else 0
                fwd, bwd = _conv_rates(shape, pad, dtype, layout, repeats)
                row[f"{name} forward"], row[f"{name} backward"] = fwd, bwd
        rates[label] = row
    return rates


@click.command()
@click.option("--repeats", default=20, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(repeats: int, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    result = {
        "benchmark": "roofline",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "matmul_gops": matmul_rates(repeats),
        "conv_gflops": conv_rates(repeats),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "roofline.json").write_text(json.dumps(result, indent=2))
    for section in ("matmul_gops", "conv_gflops"):
        for label, row in result[section].items():
            print(f"{label}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
