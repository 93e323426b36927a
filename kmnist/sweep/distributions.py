"""Every W&B parameter law: its quantile function, a sampler, its support and its domain.

W&B samples a parameter as ppf(u) with u uniform on [0, 1] (`sweeps.params.HyperParameter`);
so do we, which also lets a Bayesian optimiser search the unit interval for laws Optuna lacks.
Quantized forms round to a multiple of q and give ints when q is written as an int, as in W&B.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from kmnist.sweep.spec import Bounded, Categorical, Constant, Nested, Normal, Param

_EDGE = 2.0**-53  # keeps u off 0 and 1, where normal quantiles are infinite
_REL = 1e-9  # float slack for domain checks


def ppf(param: Param, u: float) -> Any:
    """The value at quantile `u` of `param`'s law (W&B's parametrisation)."""
    if isinstance(param, Constant):
        return param.value
    if isinstance(param, Categorical):
        return param.values[_index(param, u)]
    if isinstance(param, Nested):
        raise TypeError("a nested group has no law of its own: sample its parameters")
    raw = _continuous_ppf(param, min(max(u, _EDGE), 1.0 - _EDGE))
    if param.distribution == "int_uniform":
        return int(raw)
    return _quantize(raw, param.q) if param.q is not None else float(raw)


def _index(param: Categorical, u: float) -> int:
    n = len(param.values)
    if param.probabilities is None:
        return min(int(u * n), n - 1)
    cumulative = list(itertools.accumulate(param.probabilities))
    return min(bisect.bisect_right(cumulative, u), n - 1)


def _continuous_ppf(param: Param, u: float) -> float:
    name = param.distribution
    if isinstance(param, Bounded):
        lo, hi = param.min, param.max
        if name == "int_uniform":
            return math.floor(lo + u * (hi - lo + 1))
        if name in ("uniform", "q_uniform"):
            return lo + u * (hi - lo)
        if name in ("log_uniform", "q_log_uniform"):  # bounds are exponents
            return math.exp(lo + u * (hi - lo))
        if name in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
            return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return math.exp(-(lo + (1.0 - u) * (hi - lo)))  # inv_log_uniform: exp(-U[min, max])
    if isinstance(param, Normal):
        z = param.mu + param.sigma * NormalDist().inv_cdf(u)
        return math.exp(z) if "log" in name else z
    from scipy.special import betaincinv  # only beta laws need it

    return float(betaincinv(param.a, param.b, u))


def _quantize(value: float, q: float) -> float | int:
    steps = round(value / q)  # Python and numpy both round half to even
    return steps * q if isinstance(q, int) else float(steps * q)


def sample(param: Param, rng: np.random.Generator) -> Any:
    """One draw of `param`; a group draws each of its parameters, nested as in the file."""
    if isinstance(param, Nested):
        return sample_config(param.parameters, rng)
    return ppf(param, float(rng.random()))


def sample_config(parameters: Mapping[str, Param], rng: np.random.Generator) -> dict[str, Any]:
    """One trial config: a value per parameter, groups kept as nested mappings."""
    return {name: sample(param, rng) for name, param in parameters.items()}


def support(param: Param) -> tuple[float, float] | None:
    """Smallest and largest value the law can give (None for constant and categorical)."""
    if isinstance(param, Constant | Categorical | Nested):
        return None
    if isinstance(param, Normal):
        low = 0.0 if "log" in param.distribution else -math.inf
        return low, math.inf
    if isinstance(param, Bounded):
        lo, hi = _continuous_ppf(param, 0.0), _continuous_ppf(param, 1.0)
        if param.distribution == "int_uniform":
            hi = param.max
    else:
        lo, hi = 0.0, 1.0
    if param.q is not None:
        lo, hi = (_quantize(x, param.q) if math.isfinite(x) else x for x in (lo, hi))
    return lo, hi


def integer_valued(param: Param) -> bool:
    """True when every draw is a Python int."""
    if isinstance(param, Constant):
        return _is_int(param.value)
    if isinstance(param, Categorical):
        return all(_is_int(v) for v in param.values)
    if isinstance(param, Bounded) and param.distribution == "int_uniform":
        return True
    return _is_int(getattr(param, "q", None))


def in_domain(param: Param, value: Any) -> bool:
    """Whether `value` is a possible draw of `param`."""
    if isinstance(param, Nested):
        return (
            isinstance(value, dict)
            and value.keys() == param.parameters.keys()
            and all(in_domain(p, value[k]) for k, p in param.parameters.items())
        )
    if isinstance(param, Constant):
        return value == param.value
    if isinstance(param, Categorical):
        return any(value == v and type(value) is type(v) for v in param.values)
    if integer_valued(param) != _is_int(value) or not isinstance(value, int | float):
        return False
    lo, hi = support(param) or (-math.inf, math.inf)
    slack = _REL * max(1.0, abs(lo), abs(hi)) if math.isfinite(hi - lo) else 0.0
    if not lo - slack <= value <= hi + slack:
        return False
    q = getattr(param, "q", None)
    return q is None or math.isclose(value / q, round(value / q), abs_tol=1e-6)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
