"""Grid search: the exact product of every parameter's distinct values, in W&B's order.

Discrete forms only: constant, categorical (no probabilities), int_uniform (min..max inclusive)
and q_uniform (numpy's arange(min, max, q): max excluded, as in W&B).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import yaml

from kmnist.sweep.spec import Bounded, Categorical, Constant, Param, leaves

LIMIT = 100_000  # larger grids need a run_cap that bounds them
# Engines list every point (Optuna's GridSampler and W&B's grid search both build the whole
# product): at this size an Optuna agent takes 0.3 s and 250 MB to open the sweep, and 10x more
# at 10x the size. Bigger grids are refused, run_cap or not.
MAX_POINTS = 1_000_000
_SATURATED = 10**18  # sizes past this are not counted exactly: "over 1e+18"


def is_discrete(param: Param) -> bool:
    if isinstance(param, Constant):
        return True
    if isinstance(param, Categorical):
        return param.probabilities is None
    return isinstance(param, Bounded) and param.distribution in ("int_uniform", "q_uniform")


def count(param: Param) -> int:
    """How many distinct values `param` contributes, without listing a huge range."""
    if isinstance(param, Bounded) and param.distribution == "int_uniform":
        return max(int(param.max) - int(param.min) + 1, 0)
    if isinstance(param, Bounded):
        steps = (param.max - param.min) / param.q
        return max(math.ceil(steps), 0) if steps < _SATURATED else _SATURATED + 1
    return len(values(param))


def values(param: Param) -> list[Any]:
    """The distinct values of a discrete parameter, in file order."""
    if isinstance(param, Constant):
        return [param.value]
    if isinstance(param, Categorical):
        return _distinct(param.values)
    if not is_discrete(param):
        raise ValueError(f"{param.distribution} is not a grid parameter")
    assert isinstance(param, Bounded)
    if param.distribution == "int_uniform":
        return list(range(int(param.min), int(param.max) + 1))
    return np.arange(param.min, param.max, param.q).tolist()


def _distinct(items: tuple[Any, ...]) -> list[Any]:
    # W&B tells grid values apart by their YAML text, with whole floats read as ints; of equal
    # values the last one written is the one a run gets.
    seen: dict[str, Any] = {}
    for item in items:
        seen[_key(item)] = item
    return list(seen.values())


def _key(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, bool | str):
        return (type(value).__name__, value)  # YAML text tells these apart exactly as they are
    if isinstance(value, int | float):  # one text per value; nan's is .nan
        return ("number", "nan" if value != value else value)
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=True)  # lists, mappings


def size(parameters: Mapping[str, Param]) -> int:
    """Points in the grid; any number over 10^18 stands for "more than that"."""
    total = 1
    for _, param in leaves(parameters):
        total = min(total * count(param), _SATURATED + 1)
    return total


def shown(points: int) -> str:
    """A grid size as text: 1,200, or "over 1e+18" for a saturated one."""
    return f"{points:,}" if points <= _SATURATED else f"over {_SATURATED:.0e}"


def order(parameters: Mapping[str, Param]) -> list[tuple[tuple[str, ...], Param]]:
    """The parameters in the order W&B's grid search walks them: by name at every level.

    The grid is their product (`sweeps.grid_search`: `itertools.product` over the parameters
    sorted by name, a group's inside it, the last one varying fastest), each one's values in
    file order.
    """
    return sorted(leaves(parameters), key=lambda leaf: leaf[0])


def digits(parameters: Mapping[str, Param], index: int) -> dict[tuple[str, ...], int]:
    """Where, in `values(param)`, each parameter's value of grid point `index` is."""
    found = {}
    for path, param in reversed(order(parameters)):
        index, found[path] = divmod(index, count(param))
    return found


def point(parameters: Mapping[str, Param], index: int) -> dict[str, Any]:
    """Grid point `index` (from 0, W&B's order) as a trial config, groups kept nested."""
    chosen = digits(parameters, index)
    return nest({path: values(param)[chosen[path]] for path, param in leaves(parameters)})


def points(parameters: Mapping[str, Param]) -> Iterator[dict[str, Any]]:
    """Every grid point as a trial config, in the order W&B's grid search proposes them."""
    paths = [path for path, _ in leaves(parameters)]
    walked = order(parameters)
    for combination in itertools.product(*(values(param) for _, param in walked)):
        chosen = dict(zip((path for path, _ in walked), combination, strict=True))
        yield nest({path: chosen[path] for path in paths})  # keys in file order


def nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """{("a",): 1, ("g", "x"): 2} → {"a": 1, "g": {"x": 2}}."""
    config: dict[str, Any] = {}
    for path, value in flat.items():
        target = config
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return config


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": 1, "g": {"x": 2}} → {"a": 1, "g.x": 2}: the inverse of `nest`, keys dotted."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
