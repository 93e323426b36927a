"""`params.resolve` and `params.coerce`: defaults, W&B-style string values, and clear errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmnist.errors import UserError
from kmnist.trainer.params import PARAMS, ConfigError, Param, coerce, resolve

DEFAULTS = {name: p.default for name, p in PARAMS.items()}
FLOATS_WITH_BOUNDS = [
    p for p in PARAMS.values() if p.type is float and (p.low is not None or p.high is not None)
]
INTS_WITH_BOUNDS = [
    p for p in PARAMS.values() if p.type is int and (p.low is not None or p.high is not None)
]


def by_name(param: Param) -> str:
    return param.name


def test_table_has_float_and_int_bounds() -> None:
    # Guards the property tests below against silently running over nothing.
    assert {"val_fraction", "dropout_1", "lr", "momentum"} <= {p.name for p in FLOATS_WITH_BOUNDS}
    assert {"k", "depth", "pca_components"} <= {p.name for p in INTS_WITH_BOUNDS}


# --- defaults ---------------------------------------------------------------------------------


def test_resolve_empty_gives_every_default() -> None:
    config = resolve({})
    assert config == DEFAULTS
    assert list(config) == list(PARAMS)
    assert config["model"] == "cnn"
    assert config["lr"] == 0.001
    assert config["batch_size"] == 128
    assert config["batch_norm"] is True
    assert config["nesterov"] is False


def test_resolve_fills_the_rest_with_defaults() -> None:
    config = resolve({"model": "knn", "k": 7})
    assert config["model"] == "knn"
    assert config["k"] == 7
    assert {key: v for key, v in config.items() if key not in ("model", "k")} == {
        key: v for key, v in DEFAULTS.items() if key not in ("model", "k")
    }


def test_resolve_does_not_modify_its_input() -> None:
    raw = {"lr": "0.01"}
    resolve(raw)
    assert raw == {"lr": "0.01"}


@pytest.mark.parametrize("param", list(PARAMS.values()), ids=by_name)
def test_every_default_passes_coerce(param: Param) -> None:
    value = coerce(param, param.default)
    assert value == param.default
    assert type(value) is param.type
    # As W&B's agent would pass it on a command line.
    from_text = coerce(param, str(param.default))
    assert from_text == param.default
    assert type(from_text) is param.type


# --- string coercion, as W&B's agent passes values --------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("lr", "0.01", 0.01),
        ("lr", "1e-3", 0.001),
        ("lr", "3E-4", 0.0003),
        ("dropout_1", "0.5", 0.5),
        ("nesterov", "True", True),
        ("nesterov", "False", False),
        ("nesterov", "true", True),
        ("batch_norm", "false", False),
        ("batch_norm", "1", True),
        ("standardize", "yes", True),
        ("standardize", "off", False),
        ("batch_size", "128", 128),
        ("epochs", "10", 10),
        ("pca_components", "784", 784),
        ("seed", "+3", 3),  # seeds are >= 0 (numpy refuses -1): the sign is still parsed
        ("batch_size", "128.0", 128),
        ("model", "deep_cnn", "deep_cnn"),
        ("optimizer", "sgd", "sgd"),
    ],
)
def test_string_values_are_coerced(key: str, text: str, expected: object) -> None:
    value = resolve({key: text})[key]
    assert value == expected
    assert type(value) is type(expected)


def test_native_values_pass_through() -> None:
    config = resolve({"lr": 0.01, "batch_size": 64, "nesterov": True, "epochs": 3.0})
    assert config["lr"] == 0.01
    assert config["batch_size"] == 64
    assert config["nesterov"] is True
    assert config["epochs"] == 3
    assert type(config["epochs"]) is int


def test_underscore_keys_are_ignored() -> None:
    raw = {"_wandb": {"cli_version": "0.17"}, "_step": "nonsense", "_": 1, "lr": "0.01"}
    config = resolve(raw)
    assert config == {**DEFAULTS, "lr": 0.01}
    assert not any(key.startswith("_") for key in config)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_key_suggests_and_lists() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"lrr": 0.01})
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "unknown parameter 'lrr'" in message
    assert "did you mean 'lr'" in message
    assert "valid parameters:" in message
    for name in PARAMS:
        assert name in message
    assert "\n" not in message


def test_unknown_key_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"zzzzzzzz": 1})
    message = str(info.value)
    assert "unknown parameter 'zzzzzzzz'" in message
    assert "did you mean" not in message
    assert "batch_size" in message


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("optimizer", "rmsprop", "adam, adamw, sgd, adadelta"),
        ("model", "vit", "knn, cnn, deep_cnn, resnet"),
        ("schedule", "Cosine", "none, cosine, onecycle"),
        ("precision", "fp16", "auto, fp32, bf16"),
    ],
)
def test_bad_choice_lists_choices(key: str, value: str, choices: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({key: value})
    message = str(info.value)
    assert f"'{key}'" in message
    assert choices in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("key", "value", "range_text"),
    [
        ("k", 0, "[1, inf]"),
        ("k", "0", "[1, inf]"),
        ("dropout_1", 1.5, "[0, 0.95]"),
        ("dropout_1", -0.01, "[0, 0.95]"),
        ("depth", 6, "[1, 5]"),
        ("val_fraction", 0.6, "[0.01, 0.5]"),
        ("pca_components", 785, "[0, 784]"),
        ("lr", -1e-3, "[0, inf]"),
        ("aug_rotate", 180.5, "[0, 180]"),
        ("aug_elastic", 6.5, "[0, 6]"),
        ("aug_stroke", 1.5, "[0, 1]"),
    ],
)
def test_out_of_range_says_the_range(key: str, value: object, range_text: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({key: value})
    message = str(info.value)
    assert f"parameter '{key}'" in message
    assert range_text in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("k", True),
        ("batch_size", False),
        ("lr", True),
        ("dropout_1", False),
    ],
)
def test_bool_is_not_a_number(key: str, value: bool) -> None:
    with pytest.raises(ConfigError, match=f"parameter '{key}'"):
        resolve({key: value})


@pytest.mark.parametrize("value", [math.nan, "nan", "NaN", math.inf, "-inf", "inf"])
@pytest.mark.parametrize("key", ["lr", "dropout_1", "seed", "batch_size"])
def test_nan_and_infinity_rejected(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"parameter '{key}'"):
        resolve({key: value})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("batch_size", "3.5", "an integer"),
        ("batch_size", 3.5, "an integer"),
        ("batch_size", "abc", "an integer"),
        ("lr", "fast", "a number"),
        ("lr", [0.1], "a number"),
        ("nesterov", "maybe", "true or false"),
        ("nesterov", 2, "true or false"),
        ("model", 1, "a string"),
    ],
)
def test_wrong_type_says_what_was_expected(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({key: value})
    assert f"expected {expected}" in str(info.value)


def test_null_leaves_the_default() -> None:
    # `value: null` in a sweep: W&B's parameter file holds null, its command line says None.
    assert resolve({"lr": None, "epochs": "None"}) == resolve({})


def test_nested_groups_give_their_parameters_under_their_own_names() -> None:
    config = resolve({"optim": {"lr": "0.01", "inner": {"momentum": 0.5}}, "_wandb": {"x": 1}})
    assert (config["lr"], config["momentum"]) == (0.01, 0.5)
    with pytest.raises(ConfigError, match="'lr' is given twice"):
        resolve({"lr": 0.1, "optim": {"lr": 0.2}})
    with pytest.raises(ConfigError, match="parameter 'optimizer'"):
        resolve({"optimizer": {"lr": 0.2}})  # a trainer parameter's name is never a group


# --- properties over the bounds ---------------------------------------------------------------


def finite_between(param: Param) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=param.low, max_value=param.high, allow_nan=False, allow_infinity=False
    )


@pytest.mark.parametrize("param", FLOATS_WITH_BOUNDS, ids=by_name)
@given(data=st.data())
def test_float_inside_bounds_passes(param: Param, data: st.DataObject) -> None:
    value = data.draw(finite_between(param))
    assert coerce(param, value) == value
    assert coerce(param, repr(value)) == value  # the text form W&B's agent would pass


@pytest.mark.parametrize("param", FLOATS_WITH_BOUNDS, ids=by_name)
@given(data=st.data())
def test_float_outside_bounds_fails(param: Param, data: st.DataObject) -> None:
    sides = []
    if param.low is not None:
        below = st.floats(max_value=param.low, allow_nan=False)
        sides.append(below.filter(lambda x: x < param.low))  # -0.0 is not below 0
    if param.high is not None:
        sides.append(
            st.floats(min_value=param.high, allow_nan=False).filter(lambda x: x > param.high)
        )
    value = data.draw(st.one_of(sides))
    with pytest.raises(ConfigError, match=f"parameter '{param.name}'"):
        coerce(param, value)
    with pytest.raises(ConfigError, match=f"parameter '{param.name}'"):
        coerce(param, repr(value))


@pytest.mark.parametrize("param", INTS_WITH_BOUNDS, ids=by_name)
@given(data=st.data())
def test_int_bounds(param: Param, data: st.DataObject) -> None:
    low = int(param.low) if param.low is not None else None
    high = int(param.high) if param.high is not None else None
    inside = data.draw(st.integers(min_value=low, max_value=high if high is not None else 10**6))
    assert coerce(param, inside) == inside
    assert coerce(param, str(inside)) == inside
    if low is not None:
        below = data.draw(st.integers(max_value=low - 1, min_value=low - 10**6))
        if below == param.off:  # the one value below the range that turns the knob off
            assert coerce(param, str(below)) == below
        else:
            with pytest.raises(ConfigError):
                coerce(param, str(below))
    if high is not None:
        above = data.draw(st.integers(min_value=high + 1, max_value=high + 10**6))
        with pytest.raises(ConfigError):
            coerce(param, above)
