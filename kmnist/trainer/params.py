"""Every knob the trainer reads: name, type, default, allowed values, and which models use it.

This table is the trainer's contract: `kmnist-sweep train` parses against it, and sweep files are
checked against it. `resolve` turns a raw config (from a sweep, the CLI or W&B) into a complete,
typed one, or raises one clear error naming the key, the bad value, and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmnist.errors import UserError

NETWORKS = ("cnn", "deep_cnn", "resnet")
ALL_MODELS = ("knn", *NETWORKS)


class ConfigError(UserError):
    """A trial config names an unknown key or gives a value outside its domain."""


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # int, float, str or bool
    default: Any
    help: str
    models: tuple[str, ...] = ALL_MODELS
    choices: tuple[str, ...] = ()
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    off: float | None = None  # one value outside [low, high] also taken: it turns the knob off

    def describe(self) -> str:
        domain = "|".join(self.choices) if self.choices else self.type.__name__
        return f"{self.name}={self.default!s} ({domain}{self.range_text()}): {self.help}"

    def in_range(self, value: float) -> bool:
        too_low = self.low is not None and value < self.low
        return not (too_low or (self.high is not None and value > self.high))

    def allowed(self, value: float) -> bool:
        """Whether a number is in this knob's domain: in [low, high], or its off value."""
        return value == self.off or self.in_range(value)

    def range_text(self) -> str:
        """' in [low, high]' (' or OFF' after it where a knob has an off value), or ''."""
        if self.low is None and self.high is None:
            return ""
        text = f" in [{_fmt(self.low, '-inf')}, {_fmt(self.high, 'inf')}]"
        return text if self.off is None else f"{text} or {self.off:g}"


def _fmt(bound: float | None, missing: str) -> str:
    return missing if bound is None else f"{bound:g}"


def between(low: float, high: float) -> dict[str, float]:
    """A number's domain: [low, high], both bounds inclusive."""
    return {"low": low, "high": high}


def at_least(low: float, off: float | None = None) -> dict[str, float | None]:
    """A number's domain: [low, inf), and `off` if given (one value below low: the knob off)."""
    return {"low": low, "off": off}


def _param(
    name: str, type_: type, default: Any, domain: Any, models: tuple[str, ...], help_: str
) -> Param:
    """One row of the table as a Param."""
    if isinstance(domain, tuple):
        return Param(name, type_, default, help_, models, choices=domain)
    return Param(name, type_, default, help_, models, **(domain or {}))


# One knob a row, in the order `train --help` lists them: name, type, default, domain (the
# choices; between(low, high) or at_least(low), bounds inclusive; None for a bool), the models
# that read it, and its help (on the next line where the row would pass 100 columns).
# fmt: off
_ROWS: tuple[tuple[Any, ...], ...] = (
    # name              type   default domain            models    help
    ("model",           str,   "cnn",  ALL_MODELS,       ALL_MODELS,
        "model family"),
    # seeds: numpy's are >= 0, torch's < 2^64; %g prints 4e9 exactly
    ("seed",            int,   0,      between(0, 4_000_000_000), ALL_MODELS,
        "seed for initialisation, shuffling and augmentation (not the split: split_seed)"),
    ("split_seed",      int,   0,      between(0, 4_000_000_000), ALL_MODELS,
        "seed of the validation split and the train_size subset: trials that share it can "
        "be compared on validation and ensembled"),
    ("val_fraction",    float, 0.1,    between(0.01, 0.5), ALL_MODELS,
        "share of the 60k training images held out for validation (stratified)"),
    ("train_size",      int,   0,      at_least(10, off=0), ALL_MODELS,
        "train on a stratified subset of this many images (0 = all; else >= 10, one per class)"),
    ("precision",       str,   "auto", ("auto", "fp32", "bf16"), ALL_MODELS,
        "arithmetic: bf16 autocast where the device runs it natively (auto), or always fp32/bf16"),
    # kNN
    ("k",               int,   4,      at_least(1),      ("knn",), "neighbours that vote"),
    ("weights",         str,   "distance", ("uniform", "distance"), ("knn",),
        "vote weight"),
    ("metric",          str,   "euclidean", ("euclidean", "cosine", "manhattan"), ("knn",),
        "distance"),
    ("pca_components",  int,   0,      between(0, 784),  ("knn",),
        "project onto this many principal components (0 = off)"),
    ("standardize",     bool,  False,  None,             ("knn",),
        "scale each pixel to zero mean, unit variance"),
    # starter CNN (conv-conv-pool-dropout-fc-dropout)
    ("l1_size",         int,   32,     at_least(1),      ("cnn",), "filters of the first conv"),
    ("l2_size",         int,   64,     at_least(1),      ("cnn",), "filters of the second conv"),
    ("fc1_size",        int,   128,    at_least(1),      ("cnn",),
        "units of the hidden dense layer"),
    ("dropout_1",       float, 0.25,   between(0, 0.95), ("cnn",), "dropout after pooling"),
    ("dropout_2",       float, 0.5,    between(0, 0.95), ("cnn",), "dropout after the dense layer"),
    # deeper CNN family
    ("depth",           int,   3,      between(1, 5),    ("deep_cnn",),
        "conv blocks (two 3x3 convs each, width doubling)"),
    ("width",           int,   32,     between(1, 1024), ("deep_cnn", "resnet"),
        "channels of the first block (deep_cnn) or of the stem (resnet)"),
    ("batch_norm",      bool,  True,   None,             ("deep_cnn",),
        "batch normalisation after each conv"),
    ("dropout",         float, 0.2,    between(0, 0.95), ("deep_cnn", "resnet"),
        "dropout before the classifier"),
    # pre-activation residual network (kmnist/trainer/models/resnet.py)
    ("stages",          int,   3,      between(1, 4),    ("resnet",),
        "stages after the stem, each widening and halving the resolution"),
    ("blocks",          int,   1,      between(0, 6),    ("resnet",),
        "residual blocks per stage"),
    ("width_growth",    float, 2.0,    between(1, 4),    ("resnet",),
        "channel multiplier from one stage to the next"),
    ("se_ratio",        float, 0.0,    between(0, 1),    ("resnet",),
        "squeeze-excitation in each block, hidden units per channel (0 = off)"),
    # optimisation, for both networks
    ("optimizer",       str,   "adam", ("adam", "adamw", "sgd", "adadelta"), NETWORKS,
        "optimiser"),
    ("lr",              float, 1e-3,   at_least(0),      NETWORKS,
        "learning rate (peak rate with onecycle)"),
    ("weight_decay",    float, 0.0,    at_least(0),      NETWORKS, "L2 (decoupled with adamw)"),
    ("momentum",        float, 0.9,    between(0, 1),    NETWORKS, "sgd momentum"),
    ("nesterov",        bool,  False,  None,             NETWORKS, "sgd Nesterov momentum"),
    ("schedule",        str,   "none", ("none", "cosine", "onecycle"), NETWORKS,
        "learning-rate schedule, stepped per batch"),
    ("label_smoothing", float, 0.0,    between(0, 0.5),  NETWORKS, "cross-entropy label smoothing"),
    ("batch_size",      int,   128,    at_least(1),      NETWORKS, "training batch size"),
    ("epochs",          int,   10,     at_least(1),      NETWORKS,
        "passes over the training split"),
    # augmentation, on the device, per batch
    ("aug_translate",   float, 0.0,    between(0, 0.5),  NETWORKS,
        "random shift, as a fraction of the image size"),
    ("aug_rotate",      float, 0.0,    between(0, 180),  NETWORKS,
        "random rotation, degrees either way"),
    ("aug_scale",       float, 0.0,    between(0, 0.5),  NETWORKS,
        "random zoom, fraction either way"),
    ("aug_elastic",     float, 0.0,    between(0, 6),    NETWORKS,
        "elastic distortion: a smooth random bend of up to this many pixels (0 = off)"),
    ("aug_stroke",      float, 0.0,    between(0, 1),    NETWORKS,
        "probability of thinning or thickening an image's strokes (by up to one pixel)"),
    ("aug_erasing",     float, 0.0,    between(0, 1),    NETWORKS,
        "probability of erasing a random rectangle"),
    ("aug_shift",       int,   0,      between(0, 8),    NETWORKS,
        "random shift by whole pixels, up to this many each way (no interpolation)"),
    # batch mixing: each batch gets mixup, cutmix or neither, never both
    ("mixup_alpha",     float, 0.0,    between(0, 10),   NETWORKS,
        "mixup: images and labels blended, weight ~ Beta(alpha, alpha) (0 = off)"),
    ("mixup_prob",      float, 1.0,    between(0, 1),    NETWORKS, "share of batches mixed up"),
    ("cutmix_alpha",    float, 0.0,    between(0, 10),   NETWORKS,
        "cutmix: a box pasted from another image, area ~ Beta(alpha, alpha) (0 = off)"),
    ("cutmix_prob",     float, 1.0,    between(0, 1),    NETWORKS, "share of batches cut-mixed"),
    # evaluation
    ("ema",             float, 0.0,    between(0, 0.99999), NETWORKS,
        "decay of an exponential moving average of the weights, "
        "which is then what is evaluated (0 = off)"),
    ("tta",             int,   0,      between(0, 8),    NETWORKS,
        "test-time augmentation: predictions averaged over this many 1-pixel shifts "
        "besides the image itself (0 = off)"),
)
# fmt: on

PARAMS: dict[str, Param] = {row[0]: _param(*row) for row in _ROWS}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A complete config: `raw`'s values checked and converted, defaults for the rest.

    Keys starting with `_` (W&B's own, such as `_wandb`) are ignored. Values may be strings,
    as W&B's agent passes them on a command line (`--nesterov=True`). A nested group (a W&B
    sweep's `parameters` inside a parameter) gives its parameters under their own names; a
    null value (`value: null`, which W&B's agent passes as `None`) leaves the default.
    """
    config = {name: p.default for name, p in PARAMS.items()}
    for key, value in flatten_groups(raw).items():
        if key not in PARAMS:
            raise ConfigError(unknown_key_message(key))
        if value is not None and value != "None":
            config[key] = coerce(PARAMS[key], value)
    check_mixing(config)
    return config


def check_mixing(config: Mapping[str, Any]) -> None:
    """A batch gets at most one of mixup and cutmix, so their shares cannot exceed 1 together."""
    if not (config["mixup_alpha"] > 0 and config["cutmix_alpha"] > 0):
        return
    total = config["mixup_prob"] + config["cutmix_prob"]
    if total > 1 + 1e-9:
        raise ConfigError(
            f"mixup_prob + cutmix_prob is {total:g} with both mixup_alpha and cutmix_alpha on: "
            "each batch gets at most one of them, so set the two shares to sum to at most 1 "
            "(e.g. --mixup_prob=0.5 --cutmix_prob=0.5)"
        )


def flatten_groups(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Nested groups merged into one flat mapping of parameters (`_` keys left out)."""
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        if str(name).startswith("_"):
            continue
        group = isinstance(value, Mapping) and name not in PARAMS
        for key, leaf in (flatten_groups(value) if group else {name: value}).items():
            if key in flat:
                raise ConfigError(f"parameter '{key}' is given twice (once inside a group)")
            flat[key] = leaf
    return flat


def relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys that `config`'s model reads: what a run's record should show."""
    return {k: v for k, v in config.items() if config["model"] in PARAMS[k].models}


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, PARAMS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown parameter '{key}'{hint}; valid parameters: {', '.join(PARAMS)}"


def coerce(param: Param, value: Any) -> Any:
    """`value` as `param`'s type, or ConfigError saying what was expected."""
    try:
        converted = _convert(param.type, value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"parameter '{param.name}': expected {_expected(param)}, got {value!r}"
        ) from None
    if param.choices and converted not in param.choices:
        raise ConfigError(
            f"parameter '{param.name}': expected one of {', '.join(param.choices)}, got {value!r}"
        )
    if param.type in (int, float) and not param.allowed(converted):
        raise ConfigError(f"parameter '{param.name}': expected {_expected(param)}, got {value!r}")
    return converted


def _expected(param: Param) -> str:
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return kind[param.type] + param.range_text()


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if isinstance(value, bool):  # True is an int to Python, never a number to us
        raise TypeError(value)
    if kind is int:
        if isinstance(value, int) or (
            isinstance(value, str) and value.strip().lstrip("+-").isdigit()
        ):
            return int(value)
        number = float(value)  # 1e3, 128.0
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind is float:
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(value)
        return number
    if not isinstance(value, str):
        raise TypeError(value)
    return value
