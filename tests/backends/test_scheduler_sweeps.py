"""W&B's scheduler sweeps (`method: custom`, `scheduler.engine: optuna`) on the offline engine,
held against W&B's own code (`wandb.sdk.sweeps.scheduler.optuna`, installed with wandb): the
same distributions, directions, suggestions and told values; multi-objective sweeps in every
result view."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from engine_util import (
    PAIR,
    SINGLE,
    assert_one_line_error,
    cli,
    create,
    open_storage,
    scheduler_file,
    stored_trials,
)
from optuna.samplers import TPESampler
from optuna.trial import TrialState
from wandb.sdk.sweeps.run_state import RunState
from wandb.sdk.sweeps.scheduler import optuna as wandb_optuna
from wandb.sdk.sweeps.scheduler.optimizer import RunConfig, RunWithMetrics
from wandb.sdk.sweeps.sweep_info import SweepInfo
from wandb_helpers import SCHEMA_FORMS, sweep_file_parameters

from kmnist.backends import SweepDone
from kmnist.backends.optuna import scheduler
from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.sweep import schema


def _wandb(param: dict[str, Any]) -> Any:
    try:
        return wandb_optuna.sweep_parameter_to_distribution(param)
    except (ValueError, KeyError):
        return "refused"


def _ours(param: dict[str, Any]) -> Any:
    try:
        return scheduler.distribution(param)
    except scheduler.NotConvertible:
        return "refused"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("param", SCHEMA_FORMS + sweep_file_parameters(), ids=repr)
def test_every_parameter_form_becomes_wandbs_distribution(param: dict[str, Any]) -> None:
    assert _ours(param) == _wandb(param)


def test_the_forms_validate_accepts_are_the_ones_wandb_converts() -> None:
    named = [f for f in SCHEMA_FORMS if "distribution" in f]
    converted = {f["distribution"] for f in named if _wandb(f) != "refused"}
    assert converted == set(schema.OPTUNA_FORMS)


SPACE = {
    "model": {"value": "knn"},
    "k": {"min": 1, "max": 30},
    "weights": {"values": ["uniform", "distance"]},
    "pca_components": {"distribution": "q_uniform", "min": 0, "max": 60, "q": 10},
}


def _file(tmp_path: Path, metrics: list[dict[str, str]], run_cap: int = 40) -> Path:
    return scheduler_file(tmp_path, "optuna", metrics, SPACE, run_cap)


def _outcome(n: int, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A made-up result for the n-th trial: mostly finished, some failed or without a metric."""
    if n % 7 == 3:
        return "failed", {}
    if n % 11 == 5:
        return "completed", {"val/loss": 1.0}  # finished, but never logged the objective
    accuracy = 1 - abs(config["k"] - 7) / 30 + (config["weights"] == "distance") / 100
    return "completed", {"val/accuracy": accuracy, "parameters": config["k"] * 1000}


@pytest.mark.parametrize("metrics", [SINGLE, PAIR], ids=["one objective", "two objectives"])
def test_same_directions_suggestions_and_told_values_as_wandbs_scheduler(
    tmp_path: Path, metrics: list[dict[str, str]]
) -> None:
    path = _file(tmp_path, metrics)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    theirs = wandb_optuna.OptunaDeclarativeOptimizer(
        optuna.create_study(
            directions=wandb_optuna.sweep_directions(config), sampler=TPESampler(seed=0)
        ),
        wandb_optuna.search_space_from_sweep_config(config["parameters"]),
        SweepInfo(
            id="s", name="s", entity="e", project="p", config=config, controller_run_name="c"
        ),
    )
    journal = str(tmp_path / "sweeps.journal")
    sweep = OptunaSweep(create(path, journal), journal, seed=0)
    assert [d.name.lower() for d in sweep.study.directions] == wandb_optuna.sweep_directions(config)
    for n in range(20):
        (suggested,) = theirs.ask_n_runs(1)
        ticket = sweep.next_trial()
        assert ticket.config == suggested.config.flat_dict() | {}
        status, summary = _outcome(n, ticket.config)
        state = RunState.FINISHED if status == "completed" else RunState.FAILED
        run = RunWithMetrics(RunConfig({}), state, f"r{n}", summary, [])
        theirs.tell_run(suggested.run_id, run)
        sweep.finish(ticket, status, summary, [])
    ours = optuna.load_study(study_name=sweep.sweep_id, storage=open_storage(journal))
    told = [(t.state, t.values) for t in ours.get_trials()]
    assert told == [(t.state, t.values) for t in theirs.study.get_trials()]
    assert {TrialState.COMPLETE, TrialState.FAIL} == {state for state, _ in told}


def test_a_single_objective_trial_reports_epochs_at_wandbs_steps(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    sweep = OptunaSweep(create(_file(tmp_path, SINGLE), journal), journal)
    ticket = sweep.next_trial()
    history = [{"epoch": e, "val/accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    for entry in history:
        assert sweep.report(ticket, entry["epoch"], entry) is False  # W&B's study: no pruner
    sweep.finish(ticket, "completed", {"val/accuracy": 0.6}, history)
    (trial,) = stored_trials(journal, sweep.sweep_id)
    assert trial.intermediate_values == {0: 0.6, 1: 0.7, 2: 0.8}  # `_step` counts from 0
    assert trial.value == 0.6  # the summary's value, as W&B tells it, not the best epoch


def _multi_objective_sweep(tmp_path: Path) -> tuple[str, str]:
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(_file(tmp_path, PAIR, run_cap=6), journal)
    sweep = OptunaSweep(sweep_id, journal, seed=1)
    points = [(0.90, 5000), (0.95, 9000), (0.80, 9000), (0.97, 30000), (0.85, 2000)]
    for accuracy, parameters in points:
        ticket = sweep.next_trial()
        summary = {"val/accuracy": accuracy, "parameters": parameters, "test/accuracy": 0.5}
        sweep.finish(ticket, "completed", summary, [summary])
    sweep.finish(sweep.next_trial(), "failed", {}, [], "loss is nan")
    return sweep_id, journal


def test_the_leaderboard_puts_the_pareto_front_first(tmp_path: Path) -> None:
    sweep_id, journal = _multi_objective_sweep(tmp_path)
    proc = cli("leaderboard", sweep_id, "--storage", journal, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    ranked = [(r["pareto rank"], r["val/accuracy"], r["parameters"]) for r in rows[:5]]
    assert ranked == [
        (1, 0.97, 30000),
        (1, 0.95, 9000),
        (1, 0.90, 5000),
        (1, 0.85, 2000),
        (2, 0.80, 9000),  # dominated by 0.95 at the same size
    ]
    assert rows[5]["state"] == "failed" and rows[5]["pareto rank"] is None
    status = cli("status", sweep_id, "--storage", journal).stdout
    assert "multi-objective: val/accuracy (maximize), parameters (minimize)" in status
    assert "multi-objective (2)" in cli("ls", "--storage", journal).stdout


@pytest.mark.parametrize(
    ("choice", "fragment"),
    [
        ((), "has 2 objectives (val/accuracy, parameters): no single best"),
        (("--where", "parameters<<3"), "expected NAME<VALUE"),
        (("--where", "parameters<nan"), "with a finite number"),
        (("--prefer", "test/accuracy"), "expected one of the objectives"),
        (("--where", "parameters<1000"), "no completed trial has parameters<1000"),
    ],
)
def test_best_on_a_multi_objective_sweep_needs_a_choice(
    tmp_path: Path, choice: tuple[str, ...], fragment: str
) -> None:
    sweep_id, journal = _multi_objective_sweep(tmp_path)
    proc = cli("best", sweep_id, "--storage", journal, *choice)
    assert_one_line_error(proc, fragment)


def test_pareto_ranks_are_non_dominated_sorting() -> None:
    from kmnist.results.pareto import ranks

    points = [(0.9, 5.0), (0.95, 9.0), (0.8, 9.0), (0.97, 30.0), (0.8, 9.0), (math.inf, 99.0)]
    assert ranks(points, ["maximize", "minimize"]) == [1, 1, 2, 1, 2, 1]
    assert ranks([], ["maximize", "minimize"]) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"parameters": {**SPACE, "grp": {"parameters": {"k": {"value": 1}}}}}, "flat parameters"),
        (
            {"parameters": {**SPACE, "lr": {"distribution": "normal", "mu": 0, "sigma": 1}}},
            "no Optuna equivalent",
        ),
        (
            {
                "metrics": [
                    {"name": "val/accuracy", "goal": "maximize"},
                    {"name": "flops", "goal": "minimize"},
                ]
            },
            "does not log 'flops'",
        ),
        (
            {
                "metrics": [
                    {"name": "val/accuracy", "goal": "maximize"},
                    {"name": "test/accuracy", "goal": "maximize"},
                ]
            },
            "never tune on",
        ),
        ({"metrics": [{"name": "val/accuracy", "goal": "maximize"}]}, "at least two metrics"),
        (
            {"early_terminate": {"type": "hyperband", "min_iter": 1}},
            "cannot be used with scheduler",
        ),
        ({"method": "random"}, "scheduler engine optuna runs method custom"),
        ({"scheduler": {"engine": "hyperopt"}}, "optuna, ax or wandb"),
        (
            {"scheduler": {"engine": "ax"}, "parameters": {**SPACE, "k": {"values": [1, "a"]}}},
            "values mix numbers and strings",
        ),
        (
            {
                "scheduler": {"engine": "ax"},
                "parameters": {
                    **SPACE,
                    "lr": {"distribution": "q_log_uniform_values", "min": 1, "max": 9, "q": 2},
                },
            },
            "log-scale range of whole numbers",
        ),
    ],
)
def test_scheduler_files_wandb_would_not_run_are_refused(
    tmp_path: Path, change: dict[str, Any], fragment: str
) -> None:
    path = _file(tmp_path, PAIR)
    body = yaml.safe_load(path.read_text(encoding="utf-8")) | change
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    proc = cli("validate", str(path))  # every problem, one line each
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert fragment in proc.stderr and str(path) in proc.stderr


@pytest.mark.parametrize(
    ("scheduler_config", "fragment"),
    [
        ({"engine": "ax", "source": "mine.py", "optimizer": "client"}, "pass --allow-code"),
        ({"engine": "optuna", "source": "mine.py", "optimizer": "study"}, "pass --allow-code"),
    ],
)
def test_what_the_offline_engine_does_not_run_yet_is_one_line_at_create(
    tmp_path: Path, scheduler_config: dict[str, str], fragment: str
) -> None:
    path = _file(tmp_path, PAIR)
    body = yaml.safe_load(path.read_text(encoding="utf-8")) | {"scheduler": scheduler_config}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    journal = str(tmp_path / "sweeps.journal")
    proc = cli("create", str(path), "--backend", "optuna", "--storage", journal)
    assert_one_line_error(proc, fragment)


def test_the_report_opens_with_the_pareto_front(tmp_path: Path) -> None:
    sweep_id, journal = _multi_objective_sweep(tmp_path)
    proc = cli("report", sweep_id, "--storage", journal, "--out", str(tmp_path / "page"))
    assert proc.returncode == 0, proc.stderr
    page = next((tmp_path / "page").glob("*.html")).read_text(encoding="utf-8")
    assert page.index("Pareto front") < page.index("Optimisation history")
    assert "pareto rank" in page and "ranked by Pareto rank over val/accuracy, parameters" in page


def test_three_objectives_are_drawn_in_pairwise_panels(tmp_path: Path) -> None:
    from kmnist.backends import open_control

    three = [*PAIR, {"name": "latency_ms_b1", "goal": "minimize"}]
    journal = str(tmp_path / "sweeps.journal")
    sweep = OptunaSweep(create(_file(tmp_path, three, run_cap=4), journal), journal, seed=2)
    for point in [(0.9, 5000, 0.2), (0.8, 9000, 0.3), (0.95, 8000, 0.1)]:
        summary = dict(zip(("val/accuracy", "parameters", "latency_ms_b1"), point, strict=True))
        sweep.finish(sweep.next_trial(), "completed", summary, [summary])
    front, *rest = open_control(sweep.sweep_id, journal).plots()
    assert front.title == "Pareto front" and not front.missing
    (splom,) = front.figure.data
    assert [d["label"] for d in splom.dimensions] == [m["name"] for m in three]
    assert list(splom.text) == ["trial 0 (front)", "trial 1", "trial 2 (front)"]
    assert rest  # the single-objective figures follow, on the first objective


def test_warm_start_tells_the_new_study_what_fits_its_space(tmp_path: Path) -> None:
    earlier, journal = _multi_objective_sweep(tmp_path)
    configs = [t.user_attrs["config"] for t in stored_trials(journal, earlier)]
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    path = _file(narrow, PAIR, run_cap=2)
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["parameters"]["k"] = {"min": 1, "max": 15}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    proc = cli(
        "create", str(path), "--backend", "optuna", "--storage", journal, "--warm-start", earlier
    )
    assert proc.returncode == 0, proc.stderr
    inside = sum(c["k"] <= 15 for c in configs)
    assert (
        f"warm start: {inside} finished trial(s) of {earlier} told to the search; " in proc.stderr
    )
    assert f"{len(configs) - inside} outside this sweep's parameters skipped" in proc.stderr
    new = proc.stdout.strip()
    seeded = stored_trials(journal, new)
    assert len(seeded) == inside and all("seeded_from" in t.user_attrs for t in seeded)
    assert {t.state for t in seeded} <= {TrialState.COMPLETE, TrialState.FAIL}
    for trial in seeded:
        if trial.state == TrialState.COMPLETE:
            summary = trial.user_attrs["summary"]
            assert trial.values == [summary["val/accuracy"], summary["parameters"]]
    board = json.loads(cli("leaderboard", new, "--storage", journal, "--format", "json").stdout)
    assert board == []  # the earlier sweep's trials teach the search; they are not this one's
    sweep = OptunaSweep(new, journal)
    for _ in range(2):  # run_cap 2 is this sweep's own two trials
        sweep.finish(sweep.next_trial(), "failed", {}, [], "x")
    with pytest.raises(SweepDone):
        sweep.next_trial()


def test_warm_start_from_a_sweep_that_is_not_there_makes_no_sweep(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    path = _file(tmp_path, PAIR)
    proc = cli(
        "create", str(path), "--backend", "optuna", "--storage", journal, "--warm-start", "gone-1"
    )
    assert_one_line_error(proc, "no sweep 'gone-1'")
    assert "custom" not in cli("ls", "--storage", journal).stdout


def test_warm_start_seeds_a_bayes_sweep_over_the_same_parameters(tmp_path: Path) -> None:
    from engine_util import KNN_SWEEP, sweep_file

    journal = str(tmp_path / "sweeps.journal")
    earlier = create(sweep_file(tmp_path, KNN_SWEEP, run_cap=3), journal)
    sweep = OptunaSweep(earlier, journal, seed=0)
    for n in range(3):
        summary = {"val/accuracy": 0.5 + n / 10}
        sweep.finish(sweep.next_trial(), "completed", summary, [summary])
    bayes = sweep_file(tmp_path, KNN_SWEEP, method="bayes", name="again")
    proc = cli(
        "create", str(bayes), "--backend", "optuna", "--storage", journal, "--warm-start", earlier
    )
    assert proc.returncode == 0, proc.stderr
    assert "warm start: 3 finished trial(s)" in proc.stderr and "0 outside" in proc.stderr
    told = stored_trials(journal, proc.stdout.strip())
    assert sorted(t.value for t in told) == [0.5, 0.6, 0.7]


# -- the user's own study: code that runs only where allowed, from the file create hashed ------
STUDY_CODE = """
import optuna

def study(sweep):
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))

def done_after_two(sweep):
    return study(sweep), lambda s: len(s.trials) >= 2

def wrong_way(sweep):
    return optuna.create_study(direction="minimize")

def space(trial):
    model = trial.suggest_categorical("model", ["knn", "cnn"])
    if model == "knn":
        return {"model": model, "k": trial.suggest_int("k", 1, 12)}
    return {"model": model, "l1_size": trial.suggest_categorical("l1_size", [4, 8])}

def listed(trial):
    return [1, 2]

NOT_A_FUNCTION = 3
"""


def _code_sweep(tmp_path: Path, **scheduler_keys: str) -> Path:
    (tmp_path / "mine.py").write_text(STUDY_CODE, encoding="utf-8")
    body = {
        "method": "custom",
        "scheduler": {"engine": "optuna", "source": str(tmp_path / "mine.py"), **scheduler_keys},
        "metric": SINGLE[0],
        "run_cap": 6,
        "parameters": {"model": {"values": ["knn", "cnn"]}},
    }
    path = tmp_path / "code.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def _create(path: Path, journal: str, *extra: str) -> Any:
    return cli("create", str(path), "--backend", "optuna", "--storage", journal, *extra)


def test_user_code_runs_only_when_allowed_and_only_as_created(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    path = _code_sweep(tmp_path, optimizer="study", search_space="space")
    assert_one_line_error(_create(path, journal), "is code to run: pass --allow-code")
    assert "code" not in cli("ls", "--storage", journal).stdout  # no sweep was made
    made = _create(path, journal, "--allow-code")
    assert made.returncode == 0, made.stderr
    sweep_id = made.stdout.strip()
    assert "--allow-code" in made.stderr  # the agent command says it too
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(journal))
    assert set(study.user_attrs["scheduler_code"]) == {"source", "sha256"}  # no code stored
    assert_one_line_error(cli("agent", sweep_id, "--storage", journal), "pass --allow-code")
    sweep = OptunaSweep(sweep_id, journal, allow_code=True)
    for _ in range(4):  # define-by-run: each model gets only its own knobs
        ticket = sweep.next_trial()
        knobs = {"knn": {"model", "k"}, "cnn": {"model", "l1_size"}}[ticket.config["model"]]
        assert set(ticket.config) == knobs
        sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [])
    (tmp_path / "mine.py").write_text(STUDY_CODE + "\n# changed\n", encoding="utf-8")
    proc = cli("agent", sweep_id, "--storage", journal, "--allow-code")
    assert_one_line_error(proc, "changed since the sweep was created")


def test_the_users_terminator_ends_the_sweep(tmp_path: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    made = _create(_code_sweep(tmp_path, optimizer="done_after_two"), journal, "--allow-code")
    sweep = OptunaSweep(made.stdout.strip(), journal, allow_code=True)
    for _ in range(2):
        sweep.finish(sweep.next_trial(), "completed", {"val/accuracy": 0.5}, [])
    with pytest.raises(SweepDone, match="terminator"):
        sweep.next_trial()


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"optimizer": "missing"}, "has no 'missing'"),
        ({"optimizer": "NOT_A_FUNCTION"}, "is int, not a function"),
        ({"optimizer": "wrong_way"}, "directions ['minimize'] do not match the sweep's goals"),
        ({"search_space": "listed"}, "returned list, not a dict"),
        ({"optimizer": "study", "source": "/nowhere/mine.py"}, "cannot read it"),
    ],
)
def test_user_code_that_cannot_drive_the_sweep_is_one_line_at_create(
    tmp_path: Path, keys: dict[str, str], fragment: str
) -> None:
    path = _code_sweep(tmp_path)
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["scheduler"].update(keys)
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    journal = str(tmp_path / "sweeps.journal")
    assert_one_line_error(_create(path, journal, "--allow-code"), fragment)
    assert "code" not in cli("ls", "--storage", journal).stdout


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_four_agents_on_one_multi_objective_sweep_lose_and_repeat_nothing(
    tmp_path: Path, kmnist_dir: Path, storage: str
) -> None:
    from engine_util import KNN_SWEEP, POSTGRES_URL, counted, finish_all, start_agents, sweep_file

    url = POSTGRES_URL if storage == "postgresql" else str(tmp_path / "sweeps.journal")
    metrics = [
        {"name": "val/accuracy", "goal": "maximize"},
        {"name": "latency_ms_b1000", "goal": "minimize"},
    ]
    scheduler_config = {"engine": "optuna"}
    path = sweep_file(
        tmp_path, KNN_SWEEP, method="custom", scheduler=scheduler_config, metric=None,
        metrics=metrics, run_cap=8,
    )  # fmt: skip
    sweep_id = create(path, url)
    try:
        for code, err in finish_all(start_agents(sweep_id, url, 4), timeout=300):
            assert code == 0, err
        trials = stored_trials(url, sweep_id)
        assert len(counted(trials)) == 8  # run_cap exact across four agents
        assert [t.state for t in trials].count(TrialState.RUNNING) == 0
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len({t.number for t in done}) == len(done) == 8
        assert all(len(t.values) == 2 for t in done)
    finally:
        if storage == "postgresql":
            optuna.delete_study(study_name=sweep_id, storage=open_storage(url))
