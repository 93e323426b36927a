"""Optuna's plotly figures of a study, for the sweep's report page.

Optimisation history, parallel coordinates, parameter importances, intermediate values (the
per-epoch curves hyperband prunes on) and the trial timeline. A multi-objective sweep's page
opens with its Pareto front (two objectives: Optuna's scatter with the front; three or more:
every pair of objectives in panels, the front highlighted), the other figures on the first
objective.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import optuna.visualization as vis
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from kmnist.backends import Plot

# (title, plot, whether it takes target_name: the axis then reads "val/accuracy", not "Objective")
PLOTS: list[tuple[str, Callable[..., object], bool]] = [
    ("Optimisation history", vis.plot_optimization_history, True),
    ("Parallel coordinates", vis.plot_parallel_coordinate, True),
    ("Parameter importances", vis.plot_param_importances, True),
    ("Intermediate values (per epoch)", vis.plot_intermediate_values, False),
    ("Timeline", vis.plot_timeline, False),
]


def plots(study: optuna.Study, metric: str, objectives: Sequence[str] = ()) -> list[Plot]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no trials yet" is said on the page
    several = len(objectives) > 1
    first: dict[str, Any] = {"target": _first_value} if several else {}
    found = [pareto_front(study, objectives)] if several else []
    return found + [
        _plot(study, title, plot, {"target_name": metric, **first} if named else {})
        for title, plot, named in PLOTS
    ]


def _first_value(trial: FrozenTrial) -> float:
    return trial.values[0]


def pareto_front(study: optuna.Study, names: Sequence[str]) -> Plot:
    title = "Pareto front"
    if len(names) == 2:
        return _plot(study, title, vis.plot_pareto_front, {"target_names": list(names)})
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return Plot(title, missing="no completed trial yet")
    front = {t.number for t in study.best_trials}
    dimensions = [
        {"label": name, "values": [t.values[i] for t in done]} for i, name in enumerate(names)
    ]
    on_front = [t.number in front for t in done]
    figure = go.Figure(
        go.Splom(
            dimensions=dimensions,
            text=[
                f"trial {t.number}" + (" (front)" if f else "")
                for t, f in zip(done, on_front, strict=True)
            ],
            marker={"color": ["#d62728" if f else "#b0b0b0" for f in on_front], "size": 7},
            diagonal_visible=False,
            showupperhalf=False,
        )
    )
    figure.update_layout(title=f"{title}: red trials are on it", height=250 * len(names))
    return Plot(title, figure=figure)


def _plot(study: optuna.Study, title: str, plot: Callable[..., object], kwargs: dict) -> Plot:
    try:
        with warnings.catch_warnings():  # optuna marks some plots experimental
            warnings.simplefilter("ignore")
            return Plot(title, figure=plot(study, **kwargs))
    except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ finished trials
        return Plot(title, missing=str(exc))
