"""Exact euclidean scores for the kNN on raw pixels, and the run-time choice of the fastest kernel.

Pixels shifted to int8 (p - 128, in [-128, 127]) are exact in int8, bf16 and fp32, and every
partial sum of a dot product of two such vectors of d <= 1024 values is an integer of magnitude
at most d * 128 * 128 <= 2**24, whatever the order of summation: an int8 matmul (int32
accumulation), a bf16 one with fp32 accumulation and an fp32 one all give x . y exactly, and
it converts to fp32 exactly.

Each kernel scores one tile of training points y against a block of queries x as

    x . y - |y|^2 / 2  =  (|x|^2 - |x - y|^2) / 2        (fp32; larger is nearer)

a multiple of 1/2, hence exact in fp32 wherever its magnitude is below 2**23: always on the
near side (it is at most |x|^2 / 2 < 2**23), and on the far side as long as
|x - y|^2 < |x|^2 + 2**24. Beyond that the one rounding is monotone, so no score ever overtakes
a larger one; the caller checks that each query's k-th score lies in the exact range.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

TileScores = Callable[[torch.Tensor], torch.Tensor]
"""Scores of one training tile: int8 queries (q, d) -> fp32 (q, tile)."""

MAX_EXACT_DIM = 1024  # d * 128 * 128 <= 2**24
EXACT_SCORE = 2.0**23  # scores of smaller magnitude are exact in fp32


def _onednn_int8(train: torch.Tensor, half_sq: torch.Tensor) -> TileScores:
    """oneDNN's int8 matmul (AMX tiles on Xeons that have them, VNNI elsewhere) with the
    -|y|^2/2 bias added to the exact int32 sum, converted once to fp32, in its epilogue."""
    packed = torch.ops.onednn.qlinear_prepack(train, None)
    n = len(train)
    ones, zeros = torch.ones(n), torch.zeros(n, dtype=torch.long)
    bias = -half_sq

    def scores(queries: torch.Tensor) -> torch.Tensor:
        return torch.ops.onednn.qlinear_pointwise(
            queries, 1.0, 0, packed, ones, zeros, bias, 1.0, 0, torch.float32, "none", [], ""
        )

    return scores


def _int_mm(train: torch.Tensor, half_sq: torch.Tensor) -> TileScores:
    """torch._int_mm (oneDNN's s8 gemm, VNNI) to int32, then one fp32 subtraction."""
    weights = train.T

    def scores(queries: torch.Tensor) -> torch.Tensor:
        return torch.sub(torch._int_mm(queries, weights), half_sq)

    return scores


def _bf16(train: torch.Tensor, half_sq: torch.Tensor) -> TileScores:
    """An fp32 matmul that oneDNN runs on bf16 inputs with fp32 accumulation (AMX-BF16 or
    AVX512-BF16); the bias is subtracted after the sum, so the sum itself stays exact."""
    weights = train.float().T

    def scores(queries: torch.Tensor) -> torch.Tensor:
        with _mkldnn_fp32_precision("bf16"):
            dots = torch.mm(queries.float(), weights)
        return dots.sub_(half_sq)

    return scores


def _fp32(train: torch.Tensor, half_sq: torch.Tensor) -> TileScores:
    """A plain fp32 matmul (MKL on CPUs, cuBLAS without TF32 on GPUs): exact too, slowest."""
    weights = train.float().T
    return lambda queries: exact_dots(queries, weights).sub_(half_sq)


def exact_dots(queries: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x . y for int8 queries and float `weights` (d, n) in full fp32: exact integers."""
    with _ieee_fp32(queries.device):
        return torch.mm(queries.float(), weights)


class _mkldnn_fp32_precision:
    """Set oneDNN's fp32 math mode for a block and restore it (it is process-wide)."""

    def __init__(self, precision: str) -> None:
        self.precision = precision

    def __enter__(self) -> None:
        self.saved = torch.backends.mkldnn.matmul.fp32_precision
        torch.backends.mkldnn.matmul.fp32_precision = self.precision

    def __exit__(self, *exc: object) -> None:
        torch.backends.mkldnn.matmul.fp32_precision = self.saved


class _ieee_fp32:
    """Full fp32 matmuls for a block, whatever precision the process asked for elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.backend = (
            torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
        )

    def __enter__(self) -> None:
        self.saved = self.backend.fp32_precision
        self.backend.fp32_precision = "ieee"

    def __exit__(self, *exc: object) -> None:
        self.backend.fp32_precision = self.saved


def _has_int8_dot() -> bool:
    # Without VNNI, oneDNN's int8 kernels may sum pairs of products in saturating int16.
    return torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported()


def _has_native_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported()


Factory = Callable[[torch.Tensor, torch.Tensor], TileScores]


def _has_onednn_int8() -> bool:
    return _has_int8_dot() and hasattr(torch.ops.onednn, "qlinear_pointwise")


KERNELS: dict[str, tuple[Callable[[], bool], Factory]] = {
    "onednn-int8": (_has_onednn_int8, _onednn_int8),
    "int-mm": (_has_int8_dot, _int_mm),
    "bf16": (_has_native_bf16, _bf16),
    "fp32": (lambda: True, _fp32),
}
"""Every exact kernel: (does this CPU run it natively, factory). fp32 runs on any device."""


def available(device: torch.device) -> list[str]:
    """The kernels this machine runs natively for `device`, fp32 last."""
    if device.type != "cpu":
        return ["fp32"]
    return [name for name, (runs_here, _) in KERNELS.items() if runs_here()]


def build(name: str, train: torch.Tensor, half_sq: torch.Tensor) -> TileScores:
    """Kernel `name` for one tile: shifted int8 training rows and their |y|^2 / 2 (fp32)."""
    return KERNELS[name][1](train, half_sq)


INT8 = ("onednn-int8", "int-mm")
PROBE_POINTS = 3840  # training points the int8 kernels are timed on
SCREEN = (32, 256)  # queries and points of a first, cheap timing
SCREEN_MARGIN = 10.0  # a kernel this much slower than the best there is not timed further
_chosen: dict[tuple, str] = {}


def fastest(
    device: torch.device, probe: torch.Tensor, train: torch.Tensor, half_sq: torch.Tensor
) -> str:
    """The fastest kernel here. Where int8 dot products are native they beat bf16 (twice the
    multiply-adds per instruction: VNNI vs AVX512-BF16, AMX-INT8 vs AMX-BF16), and bf16
    beats fp32; which of the two int8 kernels wins depends on the CPU (AMX or VNNI only) and
    torch's build, so those are timed, once per process and shape, on `probe` queries against
    the first PROBE_POINTS of `train` (best of three after a warm-up).

    Some builds run a kernel on a reference path thousands of times slower (oneDNN's int8
    linear on a Zen 4 EPYC: 35 s for one probe that `_int_mm` does in 13 ms), so every
    candidate is first timed on a SCREEN-sized slice, where that costs a few milliseconds."""
    names = available(device)
    int8 = [name for name in names if name in INT8]
    key = (device.type, torch.get_num_threads(), tuple(probe.shape), tuple(train.shape))
    if len(int8) < 2 or key in _chosen:
        return _chosen.get(key, names[0])
    queries, points = SCREEN
    seconds = timings(int8, probe[:queries], train[:points], half_sq[:points], repeats=1)
    int8 = [name for name in int8 if seconds[name] <= SCREEN_MARGIN * min(seconds.values())]
    if len(int8) > 1:
        rows = slice(PROBE_POINTS)
        seconds = timings(int8, probe, train[rows], half_sq[rows], repeats=3)
    _chosen[key] = min(int8, key=seconds.__getitem__)
    return _chosen[key]


def timings(
    names: list[str], probe: torch.Tensor, train: torch.Tensor, half_sq: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Best of `repeats` timed calls of each kernel after one warm-up call."""
    seconds = {}
    for name in names:
        scores = build(name, train, half_sq)
        scores(probe)
        seconds[name] = min(_timed(scores, probe) for _ in range(repeats))
    return seconds


def _timed(scores: TileScores, probe: torch.Tensor) -> float:
    start = time.perf_counter()
    scores(probe)
    return time.perf_counter() - start


def forget_choice() -> None:
    """Forget the timed choices (a benchmark times the choice in every run)."""
    _chosen.clear()
