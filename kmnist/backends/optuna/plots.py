"""Optuna's plotly figures of a study, for the sweep's report page.

Optimisation history, parallel coordinates, parameter importances, intermediate values (the
per-epoch curves hyperband prunes on) and the trial timeline.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
import optuna.visualization as vis

from kmnist.backends import Plot

# (title, plot, whether it takes target_name: the axis then reads "val/accuracy", not "Objective")
PLOTS: list[tuple[str, Callable[..., object], bool]] = [
    ("Optimisation history", vis.plot_optimization_history, True),
    ("Parallel coordinates", vis.plot_parallel_coordinate, True),
    ("Parameter importances", vis.plot_param_importances, True),
    ("Intermediate values (per epoch)", vis.plot_intermediate_values, False),
    ("Timeline", vis.plot_timeline, False),
]


def plots(study: optuna.Study, metric: str) -> list[Plot]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no trials yet" is said on the page
    return [
        _plot(study, title, plot, {"target_name": metric} if named else {})
        for title, plot, named in PLOTS
    ]


def _plot(study: optuna.Study, title: str, plot: Callable[..., object], kwargs: dict) -> Plot:
    try:
        with warnings.catch_warnings():  # optuna marks some plots experimental
            warnings.simplefilter("ignore")
            return Plot(title, figure=plot(study, **kwargs))
    except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ finished trials
        return Plot(title, missing=str(exc))
