"""A sweep's definition is checked once, at create, and trusted when the sweep is opened."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import optuna
import pytest
from engine_util import KNN_SWEEP, assert_one_line_error, cli, create, open_storage, sweep_file

from kmnist.backends import open_control, open_sweep
from kmnist.sweep import definition
from kmnist.sweep.spec import build

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "sweeps.journal")


def _study(journal: str, sweep_id: str) -> optuna.Study:
    return optuna.load_study(study_name=sweep_id, storage=open_storage(journal))


def test_create_stores_the_checked_definition_with_its_format(journal: str, tmp_path: Path) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)
    stored = json.loads(_study(journal, sweep_id).user_attrs["definition"])
    assert stored["format"] == definition.FORMAT
    assert stored["sweep"]["parameters"]["k"] == {"min": 1, "max": 12}


def test_opening_a_sweep_and_handing_out_trials_never_validates(
    journal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)

    def no_validation(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation ran after create")

    for module in ("kmnist.sweep.validate", "kmnist.backends.optuna.stored"):
        monkeypatch.setattr(f"{module}.check_source", no_validation, raising=False)
    monkeypatch.setattr("kmnist.sweep.validate.check", no_validation)
    # nor the offline engine's refusals, nor reading the command's words again
    monkeypatch.setattr("kmnist.backends.optuna.backend.offline_refusals", no_validation)
    monkeypatch.setattr("kmnist.sweep.command.literal_parameters", no_validation)
    monkeypatch.setattr("kmnist.sweep.command.coerce", no_validation)
    sweep = open_sweep(sweep_id, journal)
    for _ in range(3):
        ticket = sweep.next_trial()
        sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [{"val/accuracy": 0.5}])
    assert open_control(sweep_id, journal).info().method == "random"


@pytest.mark.parametrize(
    "stored",
    [
        json.dumps({"format": 99, "sweep": {}}),  # written by a newer version
        "method: random",  # not JSON
        json.dumps({"format": definition.FORMAT, "sweep": {"parameters": {}}}),  # no method
    ],
)
@pytest.mark.parametrize("command", ["status", "agent", "leaderboard"])
def test_a_definition_this_version_cannot_read_is_one_line_naming_the_sweep(
    journal: str, tmp_path: Path, stored: str, command: str
) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)
    _study(journal, sweep_id).set_user_attr("definition", stored)
    proc = cli(command, sweep_id, "--storage", journal)
    assert_one_line_error(proc, f"sweep {sweep_id} holds a definition this version cannot read")


def test_a_study_made_before_definitions_were_stored_is_checked_once_when_opened(
    journal: str, tmp_path: Path
) -> None:
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)
    study = _study(journal, sweep_id)
    study.set_user_attr("definition", None)  # as older versions left it: the YAML only
    proc = cli("agent", sweep_id, "--storage", journal, "--count", "1")
    assert proc.returncode == 0, proc.stderr
    study.set_user_attr("sweep_yaml", "method: sideways\n")
    assert_one_line_error(cli("status", sweep_id, "--storage", journal), "invalid definition")


def test_a_value_json_cannot_hold_is_refused_with_its_place() -> None:
    spec = build(
        {**KNN_SWEEP, "description": None, "parameters": {"x": {"value": dt.date(2024, 1, 1)}}}
    )
    with pytest.raises(ValueError, match=r"parameters\.x\.value: datetime\.date\(2024, 1, 1\)"):
        definition.dump(spec)
    assert definition.load(definition.dump(build(KNN_SWEEP))).spec == build(KNN_SWEEP)


COMMAND_SWEEP = {
    **KNN_SWEEP,
    "command": ["${env}", "python", "-m", "kmnist.wandb_entry", "--epochs=3", "--k", "5",
                "--seed=${envvar:KMNIST_SEED}", "${args}"],
    "parameters": {"model": {"value": "knn"},
                   "grp": {"parameters": {"metric": {"value": "cosine"}}}},
}  # fmt: skip


def test_command_parameters_are_typed_once_at_create_and_envvars_left_to_each_agent(
    journal: str, tmp_path: Path
) -> None:
    sweep_id = create(sweep_file(tmp_path, COMMAND_SWEEP), journal)
    stored = json.loads(_study(journal, sweep_id).user_attrs["definition"])
    assert stored["command"] == {
        "fixed": {"epochs": 3, "k": 5},
        "per_agent": {"seed": "${envvar:KMNIST_SEED}"},
    }


def test_a_definition_stored_before_commands_were_typed_still_opens(
    journal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMNIST_SEED", "4")
    sweep_id = create(sweep_file(tmp_path, COMMAND_SWEEP), journal)
    study = _study(journal, sweep_id)
    stored = json.loads(study.user_attrs["definition"])
    older = {"format": definition.SPEC_ONLY, "sweep": stored["sweep"]}  # no "command"
    study.set_user_attr("definition", json.dumps(older))
    ticket = open_sweep(sweep_id, journal).next_trial()
    # flat and typed: the command's words, the group's parameter under its own name
    assert ticket.config == {"epochs": 3, "k": 5, "seed": 4, "model": "knn", "metric": "cosine"}


@pytest.mark.parametrize(("seed", "shown"), [(None, "'KMNIST_SEED'"), ("eleven", "'eleven'")])
def test_an_envvar_this_agent_sets_badly_is_one_line_naming_it(
    journal: str, tmp_path: Path, seed: str | None, shown: str
) -> None:
    import os

    sweep_id = create(sweep_file(tmp_path, COMMAND_SWEEP), journal)
    env = {k: v for k, v in os.environ.items() if k != "KMNIST_SEED"}
    env |= {"KMNIST_SEED": seed} if seed else {}
    proc = cli("agent", sweep_id, "--storage", journal, "--count", "1", env=env)
    assert_one_line_error(proc, f"sweep {sweep_id}: command word --seed=${{envvar:KMNIST_SEED}}")
    assert shown in proc.stderr and "set $KMNIST_SEED for this agent" in proc.stderr
    assert not _study(journal, sweep_id).trials  # no trial taken


def test_a_warm_start_needs_no_agent_environment(journal: str, tmp_path: Path) -> None:
    import os

    path = sweep_file(tmp_path, COMMAND_SWEEP)
    earlier = create(path, journal)
    with_seed = {**os.environ, "KMNIST_SEED": "3"}
    ran = cli("agent", earlier, "--storage", journal, "--count", "1", "--quiet", env=with_seed)
    assert ran.returncode == 0, ran.stderr
    # the creating shell lacks $KMNIST_SEED: only an agent reads it, when it asks for a trial
    without = {k: v for k, v in os.environ.items() if k != "KMNIST_SEED"}
    done = cli("create", str(path), "--backend", "optuna", "--storage", journal,
               "--warm-start", earlier, env=without)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(_study(journal, done.stdout.strip()).trials) == 1  # the earlier trial, told
