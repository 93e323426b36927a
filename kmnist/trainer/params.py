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


def _p(name: str, type_: type, default: Any, help_: str, **kw: Any) -> tuple[str, Param]:
    return name, Param(name, type_, default, help_, **kw)


PARAMS: dict[str, Param] = dict(
    [
        _p("model", str, "cnn", "model family", choices=ALL_MODELS),
        _p(
            "seed",
            int,
            0,
            "seed for initialisation, shuffling and augmentation (not the split: split_seed)",
            low=0,
            high=4_000_000_000,  # numpy's seeds are >= 0, torch's < 2^64; %g prints 4e9 exactly
        ),
        _p(
            "split_seed",
            int,
            0,
            "seed of the validation split and the train_size subset: trials that share it can "
            "be compared on validation and ensembled",
            low=0,
            high=4_000_000_000,
        ),
        _p(
            "val_fraction",
            float,
            0.1,
            "share of the 60k training images held out for validation (stratified)",
            low=0.01,
            high=0.5,
        ),
        _p(
            "train_size",
            int,
            0,
            "train on a stratified subset of this many images (0 = all; else >= 10, one per class)",
            low=10,
            off=0,
        ),
        _p(
            "precision",
            str,
            "auto",
            "arithmetic: bf16 autocast where the device runs it "
            "natively (auto), or always fp32/bf16",
            choices=("auto", "fp32", "bf16"),
        ),
        # kNN
        _p("k", int, 4, "neighbours that vote", models=("knn",), low=1),
        _p(
            "weights",
            str,
            "distance",
            "vote weight",
            models=("knn",),
            choices=("uniform", "distance"),
        ),
        _p(
            "metric",
            str,
            "euclidean",
            "distance",
            models=("knn",),
            choices=("euclidean", "cosine", "manhattan"),
        ),
        _p(
            "pca_components",
            int,
            0,
            "project onto this many principal components (0 = off)",
            models=("knn",),
            low=0,
            high=784,
        ),
        _p(
            "standardize",
            bool,
            False,
            "scale each pixel to zero mean, unit variance",
            models=("knn",),
        ),
        # starter CNN (conv-conv-pool-dropout-fc-dropout)
        _p("l1_size", int, 32, "filters of the first conv", models=("cnn",), low=1),
        _p("l2_size", int, 64, "filters of the second conv", models=("cnn",), low=1),
        _p("fc1_size", int, 128, "units of the hidden dense layer", models=("cnn",), low=1),
        _p("dropout_1", float, 0.25, "dropout after pooling", models=("cnn",), low=0, high=0.95),
        _p(
            "dropout_2",
            float,
            0.5,
            "dropout after the dense layer",
            models=("cnn",),
            low=0,
            high=0.95,
        ),
        # deeper CNN family
        _p(
            "depth",
            int,
            3,
            "conv blocks (two 3x3 convs each, width doubling)",
            models=("deep_cnn",),
            low=1,
            high=5,
        ),
        _p(
            "width",
            int,
            32,
            "channels of the first block (deep_cnn) or of the stem (resnet)",
            models=("deep_cnn", "resnet"),
            low=1,
            high=1024,
        ),
        _p("batch_norm", bool, True, "batch normalisation after each conv", models=("deep_cnn",)),
        _p(
            "dropout",
            float,
            0.2,
            "dropout before the classifier",
            models=("deep_cnn", "resnet"),
            low=0,
            high=0.95,
        ),
        # pre-activation residual network (kmnist/trainer/models/resnet.py)
        _p(
            "stages",
            int,
            3,
            "stages after the stem, each widening and halving the resolution",
            models=("resnet",),
            low=1,
            high=4,
        ),
        _p("blocks", int, 1, "residual blocks per stage", models=("resnet",), low=0, high=6),
        _p(
            "width_growth",
            float,
            2.0,
            "channel multiplier from one stage to the next",
            models=("resnet",),
            low=1,
            high=4,
        ),
        _p(
            "se_ratio",
            float,
            0.0,
            "squeeze-excitation in each block, hidden units per channel (0 = off)",
            models=("resnet",),
            low=0,
            high=1,
        ),
        # optimisation, for both networks
        _p(
            "optimizer",
            str,
            "adam",
            "optimiser",
            models=NETWORKS,
            choices=("adam", "adamw", "sgd", "adadelta"),
        ),
        _p("lr", float, 1e-3, "learning rate (peak rate with onecycle)", models=NETWORKS, low=0),
        _p("weight_decay", float, 0.0, "L2 (decoupled with adamw)", models=NETWORKS, low=0),
        _p("momentum", float, 0.9, "sgd momentum", models=NETWORKS, low=0, high=1),
        _p("nesterov", bool, False, "sgd Nesterov momentum", models=NETWORKS),
        _p(
            "schedule",
            str,
            "none",
            "learning-rate schedule, stepped per batch",
            models=NETWORKS,
            choices=("none", "cosine", "onecycle"),
        ),
        _p(
            "label_smoothing",
            float,
            0.0,
            "cross-entropy label smoothing",
            models=NETWORKS,
            low=0,
            high=0.5,
        ),
        _p("batch_size", int, 128, "training batch size", models=NETWORKS, low=1),
        _p("epochs", int, 10, "passes over the training split", models=NETWORKS, low=1),
        # augmentation, on the device, per batch
        _p(
            "aug_translate",
            float,
            0.0,
            "random shift, as a fraction of the image size",
            models=NETWORKS,
            low=0,
            high=0.5,
        ),
        _p(
            "aug_rotate",
            float,
            0.0,
            "random rotation, degrees either way",
            models=NETWORKS,
            low=0,
            high=180,
        ),
        _p(
            "aug_scale",
            float,
            0.0,
            "random zoom, fraction either way",
            models=NETWORKS,
            low=0,
            high=0.5,
        ),
        _p(
            "aug_elastic",
            float,
            0.0,
            "elastic distortion: a smooth random bend of up to this many pixels (0 = off)",
            models=NETWORKS,
            low=0,
            high=6,
        ),
        _p(
            "aug_stroke",
            float,
            0.0,
            "probability of thinning or thickening an image's strokes (by up to one pixel)",
            models=NETWORKS,
            low=0,
            high=1,
        ),
        _p(
            "aug_erasing",
            float,
            0.0,
            "probability of erasing a random rectangle",
            models=NETWORKS,
            low=0,
            high=1,
        ),
        _p(
            "aug_shift",
            int,
            0,
            "random shift by whole pixels, up to this many each way (no interpolation)",
            models=NETWORKS,
            low=0,
            high=8,
        ),
        # batch mixing: each batch gets mixup, cutmix or neither, never both
        _p(
            "mixup_alpha",
            float,
            0.0,
            "mixup: images and labels blended, weight ~ Beta(alpha, alpha) (0 = off)",
            models=NETWORKS,
            low=0,
            high=10,
        ),
        _p("mixup_prob", float, 1.0, "share of batches mixed up", models=NETWORKS, low=0, high=1),
        _p(
            "cutmix_alpha",
            float,
            0.0,
            "cutmix: a box pasted from another image, area ~ Beta(alpha, alpha) (0 = off)",
            models=NETWORKS,
            low=0,
            high=10,
        ),
        _p("cutmix_prob", float, 1.0, "share of batches cut-mixed", models=NETWORKS, low=0, high=1),
        # evaluation
        _p(
            "ema",
            float,
            0.0,
            "decay of an exponential moving average of the weights, "
            "which is then what is evaluated (0 = off)",
            models=NETWORKS,
            low=0,
            high=0.99999,
        ),
        _p(
            "tta",
            int,
            0,
            "test-time augmentation: predictions averaged over this many 1-pixel shifts "
            "besides the image itself (0 = off)",
            models=NETWORKS,
            low=0,
            high=8,
        ),
    ]
)

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
