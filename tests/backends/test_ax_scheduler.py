"""W&B's Ax scheduler (`scheduler.engine: ax`) on the offline engine, held against W&B's own
`wandb.sdk.sweeps.scheduler.ax`: the same Ax parameters for every form, the same objectives, the
same outcomes told; and run for real, by one agent and by two sharing a journal."""

from __future__ import annotations

import subprocess
import sys
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
from optuna.trial import TrialState
from wandb.sdk.sweeps.run_state import RunState
from wandb.sdk.sweeps.scheduler.optimizer import RunConfig, RunWithMetrics
from wandb.sdk.sweeps.sweep_info import SweepInfo
from wandb_helpers import SCHEMA_FORMS, sweep_file_parameters

from kmnist.backends.optuna.ax_sampler import AxSampler, ax_parameter
from kmnist.backends.optuna.backend import OptunaSweep
from kmnist.sweep.validate import check_file

pytest.importorskip("ax")  # the ax extra, which the dev install brings: CI has it
from wandb.sdk.sweeps.scheduler import ax as wandb_ax

SPACE = {
    "model": {"value": "knn"},
    "k": {"min": 1, "max": 15},
    "weights": {"values": ["uniform", "distance"]},
    "train_size": {"value": 2000},
}
# Forms only the Ax table treats apart: choices of mixed kinds, and log-scale whole numbers.
AX_CASES: list[dict[str, Any]] = [
    {"values": [1, 2.5]},
    {"values": [1, "a"]},
    {"values": [True, False]},
    {"values": [True, 1]},
    {"values": ["a", None]},
    {"value": True},
    {"distribution": "q_log_uniform_values", "min": 2, "max": 64, "q": 1},
    {"distribution": "q_log_uniform_values", "min": 1.5, "max": 64},
    {"distribution": "q_log_uniform_values", "min": 0.9, "max": 64},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
]


def _file(
    folder: Path,
    metrics: list[dict[str, str]],
    parameters: dict[str, Any],
    run_cap: int = 8,
    program: str = "kmnist/wandb_entry.py",
) -> Path:
    return scheduler_file(folder, "ax", metrics, parameters, run_cap, program)


def _wandb(param: dict[str, Any]) -> Any:
    """W&B's Ax parameter, or "refused" where W&B's scheduler would not start with it."""
    config = {"parameters": {"p": param}, "metric": SINGLE[0]}
    try:
        wandb_ax.create_default_client(config)  # Ax checks the bounds, types and scale here
        return wandb_ax.sweep_parameter_to_parameter("p", param)
    except Exception:  # W&B's scheduler stops on any of them, Ax's own errors included
        return "refused"


def _ours(folder: Path, param: dict[str, Any]) -> Any:
    """Ours: "refused" where `validate` refuses the file, else the Ax parameter we build (the
    file runs another program: the trainer's own rules on its knobs stay out of it)."""
    _, problems = check_file(_file(folder, SINGLE, {"p": param}, program="train.py"))
    return "refused" if problems else ax_parameter("p", param)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("param", SCHEMA_FORMS + AX_CASES + sweep_file_parameters(), ids=repr)
def test_every_parameter_form_becomes_wandbs_ax_parameter(
    tmp_path: Path, param: dict[str, Any]
) -> None:
    assert _ours(tmp_path, param) == _wandb(param)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("metrics", [SINGLE, PAIR], ids=["one objective", "two objectives"])
def test_the_objectives_are_wandbs(metrics: list[dict[str, str]]) -> None:
    config = {"parameters": SPACE} | (
        {"metrics": metrics} if len(metrics) > 1 else {"metric": metrics[0]}
    )
    theirs = wandb_ax.create_default_client(config)
    sampler = AxSampler(SPACE, [(m["name"], m["goal"]) for m in metrics])
    ours = sampler._client(seed=0)
    assert wandb_ax._experiment_objectives(ours) == wandb_ax._experiment_objectives(theirs)


def _outcome(n: int, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A made-up result for the n-th trial: finished, failed, stopped, or without a metric."""
    if n == 2:
        return "failed", {}
    if n == 4:
        return "stopped", {}
    if n == 5:
        return "completed", {"val/loss": 1.0}  # finished, but never logged the objective
    accuracy = 1 - abs(config["k"] - 7) / 30 + (config["weights"] == "distance") / 100
    return "completed", {"val/accuracy": accuracy, "parameters": config["k"] * 1000}


_STATES = {"completed": RunState.FINISHED, "failed": RunState.FAILED, "stopped": RunState.KILLED}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("metrics", [SINGLE, PAIR], ids=["one objective", "two objectives"])
def test_trials_are_told_as_wandbs_ax_optimizer_tells_them(
    tmp_path: Path, metrics: list[dict[str, str]]
) -> None:
    """Seven trials run (one still running at the end). W&B's AxOptimizer is told the same
    runs as its scheduler tells a run it handed out: attached when it starts (our proposals are
    its arms), then `tell_run` with its end. Both Clients must hold the same trials, statuses
    and data."""
    path = _file(tmp_path, metrics, SPACE)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    info = SweepInfo(
        id="s", name="s", entity="e", project="p", config=config, controller_run_name="c"
    )
    theirs = wandb_ax.build_ax_optimizer(info)
    journal = str(tmp_path / "sweeps.journal")
    sweep = OptunaSweep(create(path, journal), journal)
    for n in range(7):
        ticket = sweep.next_trial()
        run_config = RunConfig.from_values(ticket.config)
        started = RunWithMetrics(run_config, RunState.RUNNING, f"r{n}", {}, [])
        index = theirs.tell_existing_active_run(started)
        if n == 6:  # still running
            break
        status, summary = _outcome(n, ticket.config)
        theirs.tell_run(index, RunWithMetrics(run_config, _STATES[status], f"r{n}", summary, []))
        sweep.finish(ticket, status, summary, [])
    sampler = sweep.plan.sampler
    assert isinstance(sampler, AxSampler)
    ours = sampler.client_for(sweep.study, asking=7)
    assert _told(ours) == _told(theirs.client)
    statuses = [status for status, _, _ in _told(ours)]
    assert statuses == [
        "COMPLETED",
        "COMPLETED",
        "FAILED",
        "COMPLETED",
        "FAILED",
        "FAILED",
        "RUNNING",
    ]


def _told(client: Any) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    """Each trial of an Ax Client: status, parameters, data (Ax keeps its experiment private)."""
    experiment = client._experiment
    data = experiment.lookup_data().df
    told = []
    for index, trial in sorted(experiment.trials.items()):
        rows = data[data["trial_index"] == index]
        means = dict(zip(rows["metric_name"], rows["mean"], strict=True))
        told.append((trial.status.name, dict(trial.arm.parameters), means))
    return told


@pytest.mark.filterwarnings("ignore")
def test_the_model_takes_over_once_the_initial_trials_are_in(tmp_path: Path) -> None:
    """A Client rebuilt per trial stands where a long-lived one would: past its center point and
    Sobol draws (5, two of them with results), the model (MBM) proposes."""
    journal = str(tmp_path / "sweeps.journal")
    sweep = OptunaSweep(create(_file(tmp_path, SINGLE, SPACE), journal), journal)
    sampler = sweep.plan.sampler
    assert isinstance(sampler, AxSampler)
    nodes = []
    for n in range(6):
        ticket = sweep.next_trial()
        client = sampler.client_for(sweep.study, asking=n + 1)
        nodes.append(client._generation_strategy.current_node_name)  # Ax keeps it private
        sweep.finish(ticket, *_outcome(0, ticket.config), [])
    assert nodes[:4] == ["Sobol"] * 4 and nodes[4:] == ["MBM", "MBM"]


@pytest.mark.e2e
def test_two_agents_share_one_ax_sweep(tmp_path: Path, kmnist_dir: Path) -> None:
    path = _file(tmp_path, SINGLE, SPACE, run_cap=8)
    journal = str(tmp_path / "sweeps.journal")
    proc = cli("run", str(path), "--agents", "2", "--storage", journal, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "[INFO" not in proc.stderr  # Ax's log kept quiet
    (sweep_id,) = optuna.get_all_study_names(open_storage(journal))
    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8  # run_cap exact, none lost
    assert all(set(t.params) == set(SPACE) for t in trials)
    assert len({(t.params["k"], t.params["weights"]) for t in trials}) >= 6


def test_without_ax_installed_create_says_what_to_install(tmp_path: Path) -> None:
    """Ax hidden from the CLI's interpreter (a None in sys.modules: "not installed")."""
    hide = "import sys; sys.modules['ax'] = None; from kmnist.cli.app import main; main()"
    path = _file(tmp_path, SINGLE, SPACE)
    journal = tmp_path / "sweeps.journal"
    command = ["create", str(path), "--backend", "optuna", "--storage", str(journal)]
    proc = subprocess.run(
        [sys.executable, "-c", hide, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_line_error(proc, "scheduler engine ax needs Ax on this machine: pip install '.[ax]'")
    assert not journal.exists()  # no sweep made


CLIENT_CODE = """
from ax.api.client import Client
from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig


def client(sweep):
    made = Client(random_seed=7)
    made.configure_experiment(parameters=[
        ChoiceParameterConfig(name="model", values=["knn"], parameter_type="str"),
        RangeParameterConfig(name="k", bounds=(1, 15), parameter_type="int"),
        ChoiceParameterConfig(name="weights", values=["uniform", "distance"], parameter_type="str"),
        ChoiceParameterConfig(name="train_size", values=[2000], parameter_type="int"),
    ])
    made.configure_optimization(objective="val/accuracy")
    made.configure_generation_strategy(method="random_search")
    return made, done_after_three


def done_after_three(client):
    return len([t for t in client._experiment.trials.values() if t.status.is_completed]) >= 3


def wrong_way(sweep):
    made, _ = client(sweep)
    made.configure_optimization(objective="-val/accuracy")
    return made


def unconfigured(sweep):
    return Client()


def other_space(sweep):
    made = Client()
    lr = RangeParameterConfig(name="lr", bounds=(0.0, 1.0), parameter_type="float")
    made.configure_experiment(parameters=[lr])
    made.configure_optimization(objective="val/accuracy")
    return made
"""


def _client_sweep(tmp_path: Path, optimizer: str) -> Path:
    (tmp_path / "mine.py").write_text(CLIENT_CODE, encoding="utf-8")
    path = _file(tmp_path, SINGLE, SPACE, run_cap=8)
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["scheduler"] = {"engine": "ax", "source": "mine.py", "optimizer": optimizer}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.e2e
def test_an_ax_client_of_your_own_drives_the_sweep_and_its_terminator_ends_it(
    tmp_path: Path, kmnist_dir: Path
) -> None:
    """W&B's `build_ax_optimizer` with `scheduler.optimizer`: the user's client (random search
    here) proposes, its terminator ends the sweep after three completed trials, run_cap 8."""
    path = _client_sweep(tmp_path, "client")
    journal = str(tmp_path / "sweeps.journal")
    refused = cli("create", str(path), "--storage", journal, "--backend", "optuna", cwd=tmp_path)
    assert_one_line_error(refused, "pass --allow-code")
    proc = cli("run", str(path), "--storage", journal, "--allow-code", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "the study's terminator ended the search" in proc.stdout + proc.stderr
    (sweep_id,) = optuna.get_all_study_names(open_storage(journal))
    trials = stored_trials(journal, sweep_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


@pytest.mark.parametrize(
    ("optimizer", "fragments"),
    [
        ("wrong_way", ("the Ax client optimizes [('val/accuracy', 'minimize')]", "'maximize'")),
        ("other_space", ("the Ax client searches ['lr'], the sweep file ['k', 'model'",)),
        ("unconfigured", ("the Ax client has no objective per metric", "configure_experiment")),
    ],
)
def test_an_ax_client_that_is_not_the_sweeps_is_one_line_at_create(
    tmp_path: Path, optimizer: str, fragments: tuple[str, ...]
) -> None:
    path = _client_sweep(tmp_path, optimizer)
    journal = tmp_path / "sweeps.journal"
    proc = cli(
        "create", str(path), "--storage", str(journal), "--allow-code", "--backend", "optuna",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(proc, *fragments)
    assert not journal.exists()


@pytest.mark.filterwarnings("ignore")
def test_a_warm_started_ax_sweep_is_told_the_earlier_trials(tmp_path: Path) -> None:
    """`create --warm-start`: the earlier sweep's finished trials reach Ax as told trials (five
    not failed: the model proposes this sweep's first trial), and use none of its run_cap."""
    journal = str(tmp_path / "sweeps.journal")
    earlier = OptunaSweep(create(_file(tmp_path, SINGLE, SPACE), journal), journal)
    for n in range(8):
        ticket = earlier.next_trial()
        earlier.finish(ticket, *_outcome(n, ticket.config), [])
    later = tmp_path / "later"
    later.mkdir()
    path = _file(later, SINGLE, SPACE, run_cap=2)
    proc = cli(
        "create", str(path), "--backend", "optuna", "--storage", journal,
        "--warm-start", earlier.sweep_id,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sweep = OptunaSweep(proc.stdout.strip(), journal)
    sampler = sweep.plan.sampler
    assert isinstance(sampler, AxSampler)
    client = sampler.client_for(sweep.study, asking=8)
    statuses = [status for status, _, _ in _told(client)]
    assert (
        statuses == ["COMPLETED"] * 2 + ["FAILED", "COMPLETED"] + ["FAILED"] * 2 + ["COMPLETED"] * 2
    )
    assert client._generation_strategy.current_node_name == "MBM"  # Ax keeps it private
    tickets = [sweep.next_trial() for _ in range(2)]  # run_cap 2: this sweep's own
    assert all(set(t.config) == set(SPACE) for t in tickets)
