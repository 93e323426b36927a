"""W&B's hyperband early-termination rule, as a pure function over run histories.

Rule (W&B `sweeps.hyperband_stopping`): brackets are report counts, from `min_iter`·eta^k, or
from `max_iter`/eta^i for i = 1..s. At each bracket b, the threshold is the value at report b of
every run that reached b, sorted best first, taken at index int(n/eta): the edge of the top 1/eta.
A running run is stopped when, at the last bracket it reached, its metric is worse than that
threshold: its value at the bracket when `strict`, else the best of its whole history.
A history counts reports (one per epoch here), not step numbers; non-finite values are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from numbers import Real
from typing import TypeVar

MIN_ITER_BRACKETS = 100  # W&B lists this many brackets from min_iter; later ones never bind
Key = TypeVar("Key", bound=Hashable)


def brackets(
    min_iter: int | None = None,
    max_iter: int | None = None,
    s: int | None = None,
    eta: float = 3,
) -> list[int]:
    """Report counts at which runs are compared, ascending (may be empty: a config problem)."""
    if max_iter is not None:  # W&B looks at max_iter first
        found: list[int] = []
        band: float = max_iter
        for _ in range(int(s or 0)):
            band /= eta
            if band < 1:
                break
            found.append(int(band))
        return sorted(found)
    if min_iter is None:
        return []
    found, band = [], min_iter
    for _ in range(MIN_ITER_BRACKETS):
        found.append(int(band))
        band *= eta  # repeated products, as W&B computes them, so float etas round alike
    return found


def to_stop(
    histories: Mapping[Key, Sequence[object]],
    running: Iterable[Key],
    bands: Sequence[int],
    eta: float = 3,
    goal: str = "minimize",
    strict: bool = True,
) -> list[Key]:
    """The running runs W&B's rule stops, in `running` order.

    `histories` holds every run of the sweep (finished, failed, running): its metric's reported
    values in order. Thresholds come from all of them; only `running` ones can be stopped.
    """
    sign = -1.0 if goal == "maximize" else 1.0  # compare as losses: lower is better
    clean = {key: [sign * float(v) for v in h if _finite(v)] for key, h in histories.items()}
    thresholds = [_threshold([h for h in clean.values() if h], band, eta) for band in bands]
    stopped = []
    for key in running:
        history = clean.get(key, [])
        reached = [(b, t) for b, t in zip(bands, thresholds, strict=True) if b <= len(history)]
        if not reached:
            continue
        band, threshold = reached[-1]
        value = history[band - 1] if strict else min(history)
        if value > threshold:
            stopped.append(key)
    return stopped


def _threshold(histories: list[list[float]], band: int, eta: float) -> float:
    values = sorted(h[band - 1] for h in histories if len(h) >= band)
    if not values:
        return math.inf
    return values[int((1.0 / eta) * len(values))]


def _finite(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
