"""Property tests: draws lie in their law's domain and follow it; grids are exact products."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kmnist.sweep import distributions as dist
from kmnist.sweep import grid
from kmnist.sweep.spec import (
    BOUNDED,
    Beta,
    Bounded,
    Categorical,
    Constant,
    Nested,
    Normal,
    Param,
    build_param,
    leaves,
)

finite = st.floats(-50, 50, allow_nan=False)
positive = st.floats(1e-6, 1e3)


@st.composite
def bounded(draw: st.DrawFn) -> Bounded:
    form = draw(st.sampled_from(BOUNDED))
    if form.endswith("_values"):
        lo = draw(positive)
        hi = lo * draw(st.floats(1.01, 1e4))
    elif form in ("log_uniform", "q_log_uniform", "inv_log_uniform"):
        lo = draw(st.floats(-10, 5))
        hi = lo + draw(st.floats(0.01, 5))
    elif form == "int_uniform":
        lo = draw(st.integers(-100, 100))
        hi = lo + draw(st.integers(1, 100))
    else:
        lo = draw(finite)
        hi = lo + draw(st.floats(0.01, 100))
    q = draw(st.one_of(st.integers(1, 5), st.floats(0.01, 10))) if form.startswith("q_") else None
    return Bounded(form, lo, hi, q)


scalars = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans(), finite)
q_or_none = st.one_of(st.none(), st.integers(1, 3), st.floats(0.05, 2))
normals = st.builds(
    lambda name, mu, sigma, q: Normal(("q_" if q else "") + name, mu, sigma, q),
    st.sampled_from(["normal", "log_normal"]),
    st.floats(-3, 3),
    st.floats(0, 3),
    q_or_none,
)
betas = st.builds(
    lambda a, b, q: Beta("q_beta" if q else "beta", a, b, q),
    st.floats(0.1, 10),
    st.floats(0.1, 10),
    st.one_of(st.none(), st.floats(0.05, 0.5)),
)


@st.composite
def categoricals(draw: st.DrawFn) -> Categorical:
    values = tuple(draw(st.lists(scalars, min_size=1, max_size=6)))
    if not draw(st.booleans()):
        return Categorical(values)
    weights = draw(st.lists(st.floats(0.01, 1), min_size=len(values), max_size=len(values)))
    return Categorical(values, tuple(w / sum(weights) for w in weights))


laws = st.one_of(st.builds(Constant, scalars), categoricals(), bounded(), normals, betas)
trees = st.recursive(
    laws,
    lambda inner: st.builds(
        Nested,
        st.dictionaries(
            st.from_regex(r"[a-z]{1,4}", fullmatch=True), inner, min_size=1, max_size=3
        ),
    ),
    max_leaves=8,
)


@given(trees, st.integers(0, 2**32 - 1))
def test_every_draw_lies_in_its_domain(param: Param, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(20):
        value = dist.sample(param, rng)
        assert dist.in_domain(param, value), (param, value)


def _shape(param: Param) -> Any:
    if isinstance(param, Nested):
        return {k: _shape(p) for k, p in param.parameters.items()}
    return None


def _shape_of(value: Any, like: Any) -> Any:
    if isinstance(like, dict):
        return {k: _shape_of(value[k], like[k]) for k in value}
    return None


@given(
    st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), trees, min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_nested_structure_is_preserved(parameters: dict[str, Param], seed: int) -> None:
    config = dist.sample_config(parameters, np.random.default_rng(seed))
    shape = {k: _shape(p) for k, p in parameters.items()}
    assert list(config) == list(parameters)
    assert _shape_of(config, shape) == shape


discrete = st.one_of(
    st.builds(Constant, scalars),
    st.builds(
        lambda v: Categorical(tuple(dict.fromkeys(v))),
        st.lists(
            st.one_of(st.integers(-9, 9), st.text(min_size=1, max_size=2)), min_size=1, max_size=4
        ),
    ),
    st.builds(
        lambda lo, n: Bounded("int_uniform", lo, lo + n), st.integers(-5, 5), st.integers(1, 4)
    ),
    st.builds(
        lambda lo, n, q: Bounded("q_uniform", lo, lo + n * q - q / 2, q),
        st.integers(0, 5),
        st.integers(1, 4),
        st.sampled_from([1, 2, 0.5, 0.25]),
    ),
)
discrete_trees = st.recursive(
    discrete,
    lambda inner: st.builds(
        Nested, st.dictionaries(st.sampled_from("abc"), inner, min_size=1, max_size=2)
    ),
    max_leaves=5,
)


@given(st.dictionaries(st.sampled_from("xyz"), discrete_trees, min_size=1, max_size=3))
def test_grid_is_the_exact_product(parameters: dict[str, Param]) -> None:
    # W&B's order: the product over the parameters sorted by path, the last varying fastest.
    walked = sorted(leaves(parameters), key=lambda leaf: leaf[0])
    axes = [_own_values(p) for _, p in walked]
    expected = [
        grid.nest(dict(zip((path for path, _ in walked), combo, strict=True)))
        for combo in itertools.product(*axes)
    ]
    found = list(grid.points(parameters))
    assert found == expected
    assert grid.size(parameters) == len(found) == math.prod(len(a) for a in axes)
    assert [grid.point(parameters, i) for i in range(len(found))] == found


def _own_values(param: Param) -> list[Any]:
    """Each discrete form's values, written out independently of grid.values."""
    if isinstance(param, Constant):
        return [param.value]
    if isinstance(param, Categorical):
        return list(param.values)  # the strategy draws distinct values
    assert isinstance(param, Bounded)
    if param.distribution == "int_uniform":
        return list(range(int(param.min), int(param.max) + 1))
    n = math.ceil((param.max - param.min) / param.q)
    return [param.min + i * param.q for i in range(n)]


# -- each law, checked against its distribution function (Kolmogorov-Smirnov, p > 1e-4) --------
N = 2000
P_MIN = 1e-4


def _draws(param: Param, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([dist.sample(param, rng) for _ in range(N)], dtype=float)


@settings(max_examples=15)
@given(positive, st.floats(1.5, 1e5), st.integers(0, 1000))
def test_log_uniform_values_is_uniform_in_log_space(lo: float, ratio: float, seed: int) -> None:
    for form in ("log_uniform_values", "inv_log_uniform_values"):
        logs = np.log(_draws(Bounded(form, lo, lo * ratio), seed))
        span = math.log(lo * ratio) - math.log(lo)
        assert stats.kstest(logs, "uniform", args=(math.log(lo), span)).pvalue > P_MIN


@settings(max_examples=15)
@given(st.floats(-8, 2), st.floats(0.1, 4), st.integers(0, 1000))
def test_exponent_forms_are_uniform_in_log_space(lo: float, width: float, seed: int) -> None:
    logs = np.log(_draws(Bounded("log_uniform", lo, lo + width), seed))
    assert stats.kstest(logs, "uniform", args=(lo, width)).pvalue > P_MIN
    inverse = -np.log(_draws(Bounded("inv_log_uniform", lo, lo + width), seed))
    assert stats.kstest(inverse, "uniform", args=(lo, width)).pvalue > P_MIN


@settings(max_examples=15)
@given(finite, st.floats(0.1, 100), st.integers(0, 1000))
def test_uniform(lo: float, width: float, seed: int) -> None:
    draws = _draws(Bounded("uniform", lo, lo + width), seed)
    assert stats.kstest(draws, "uniform", args=(lo, width)).pvalue > P_MIN


@settings(max_examples=15)
@given(st.floats(-3, 3), st.floats(0.1, 3), st.integers(0, 1000))
def test_normal_and_log_normal(mu: float, sigma: float, seed: int) -> None:
    draws = _draws(Normal("normal", mu, sigma), seed)
    assert stats.kstest(draws, "norm", args=(mu, sigma)).pvalue > P_MIN
    logs = np.log(_draws(Normal("log_normal", mu, sigma), seed + 1))
    assert stats.kstest(logs, "norm", args=(mu, sigma)).pvalue > P_MIN


@settings(max_examples=15)
@given(st.floats(0.2, 8), st.floats(0.2, 8), st.integers(0, 1000))
def test_beta(a: float, b: float, seed: int) -> None:
    assert stats.kstest(_draws(Beta("beta", a, b), seed), "beta", args=(a, b)).pvalue > P_MIN


@settings(max_examples=15)
@given(st.integers(-20, 20), st.integers(1, 9), st.integers(0, 1000))
def test_int_uniform_hits_every_integer_evenly(lo: int, width: int, seed: int) -> None:
    draws = _draws(Bounded("int_uniform", lo, lo + width), seed).astype(int)
    counts = np.bincount(draws - lo, minlength=width + 1)
    assert len(counts) == width + 1
    assert stats.chisquare(counts).pvalue > P_MIN


@settings(max_examples=15)
@given(st.lists(st.floats(0.05, 1), min_size=2, max_size=5), st.integers(0, 1000))
def test_probabilities_are_respected(weights: list[float], seed: int) -> None:
    probabilities = [w / sum(weights) for w in weights]
    param = Categorical(tuple(range(len(weights))), tuple(probabilities))
    draws = _draws(param, seed).astype(int)
    counts = np.bincount(draws, minlength=len(weights))
    assert stats.chisquare(counts, np.array(probabilities) * N).pvalue > P_MIN


def test_quantized_draws_are_multiples_of_q_and_ints_when_q_is() -> None:
    rng = np.random.default_rng(0)
    for raw in (
        {"distribution": "q_uniform", "min": 0, "max": 100, "q": 5},
        {"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
        {"distribution": "q_normal", "mu": 50, "sigma": 10, "q": 2},
    ):
        param = build_param(raw)
        values = [dist.sample(param, rng) for _ in range(200)]
        assert all(isinstance(v, int) and v % raw["q"] == 0 for v in values), raw
    param = build_param({"distribution": "q_uniform", "min": 0, "max": 1})  # q defaults to 1.0
    assert {dist.sample(param, rng) for _ in range(200)} == {0.0, 1.0}


def test_wandb_defaults() -> None:
    assert build_param({"distribution": "normal"}) == Normal("normal", 0.0, 1.0, None)
    assert build_param({"distribution": "q_beta"}) == Beta("q_beta", 1.0, 1.0, 1.0)
    assert build_param({"min": 1, "max": 3}).distribution == "int_uniform"
    assert build_param({"min": 1, "max": 3.0}).distribution == "uniform"
    assert build_param({"values": [1], "probabilities": [1]}).distribution == (
        "categorical_w_probabilities"
    )
