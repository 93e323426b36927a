"""The worker face of a sweep, one suite for every engine (as Optuna tests every storage).

Each engine is one fixture: the offline engine on a journal file, on PostgreSQL and on Redis
(real servers on this host), and a W&B sweep, whose server is replaced at its two calls (the
agent loop, `wandb.agent`, and the sweep's config, `wandb.Api().sweep`): W&B's cloud cannot be
reached from here. A new engine is one more entry in `ENGINES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import wandb
from engine_util import KNN_SWEEP, POSTGRES_URL, create, open_storage, sweep_file
from wandb_helpers import FakeAgent

from kmnist.backends import SweepDone, Ticket, WorkerSweep, open_sweep
from kmnist.backends.wandb.sweep import WandbSweep

redis = pytest.importorskip("redis")  # in the dev extra: CI has it

RUNS = 2  # every engine's sweep hands out exactly this many trials
CONFIGS = [{"model": "knn", "k": k, "train_size": 2000} for k in (3, 5)]
Opener = Callable[[Path], WorkerSweep]


def _offline(storage: Callable[[Path], str]) -> Callable[[Path], Iterator[Opener]]:
    def opener(tmp_path: Path) -> Iterator[Opener]:
        url = storage(tmp_path)
        made: list[str] = []

        def open_new(folder: Path) -> WorkerSweep:
            made.append(create(sweep_file(folder, KNN_SWEEP, run_cap=RUNS), url))
            return open_sweep(made[-1], url)

        yield open_new
        if url.startswith("postgresql://"):  # the server outlives the test: its studies go
            for name in made:
                optuna.delete_study(study_name=name, storage=open_storage(url))
        elif url.startswith("redis://"):  # a database of its own
            redis.Redis.from_url(url).flushdb()

    return opener


def _redis_url(tmp_path: Path) -> str:
    url = "redis://127.0.0.1:6379/12"
    redis.Redis.from_url(url).flushdb()
    return url


class _Api:
    """W&B's public API as far as the worker face reads it: the sweep's config."""

    def sweep(self, path: str) -> SimpleNamespace:
        assert path == "team/proj/con01"
        return SimpleNamespace(config={"method": "random", "metric": KNN_SWEEP["metric"]})


def _wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opener]:
    monkeypatch.setattr(wandb, "agent", FakeAgent(CONFIGS))
    monkeypatch.setattr(wandb, "Api", _Api)
    yield lambda folder: WandbSweep.parse("team/proj/con01")


ENGINES = {
    "journal": _offline(lambda tmp: str(tmp / "sweeps.journal")),
    "postgresql": _offline(lambda tmp: POSTGRES_URL),
    "redis": _offline(_redis_url),
    "wandb": None,  # needs W&B's stand-ins, set up in the fixture
}


@pytest.fixture(params=list(ENGINES))
def open_new(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Opener]:
    if request.param == "wandb":
        request.getfixturevalue("wandb_up")
        yield from _wandb(tmp_path, monkeypatch)
    else:
        yield from ENGINES[request.param](tmp_path)


def _run_all(sweep: WorkerSweep, status: str = "completed") -> list[Ticket]:
    done = []
    while True:
        try:
            ticket = sweep.next_trial()
        except SweepDone:
            return done
        epoch = {"epoch": 1, "val/accuracy": 0.5 + 0.1 * len(done)}
        assert sweep.report(ticket, 1, epoch) is False  # no early termination configured
        sweep.finish(ticket, status, epoch, [epoch])
        done.append(ticket)


def test_hands_out_trials_until_the_sweep_is_done(open_new: Opener, tmp_path: Path) -> None:
    sweep = open_new(tmp_path)
    tickets = _run_all(sweep)
    assert len(tickets) == RUNS
    assert len({t.number for t in tickets}) == RUNS
    for ticket in tickets:
        assert ticket.config["model"] == "knn" and 1 <= ticket.config["k"] <= 12
    with pytest.raises(SweepDone):
        sweep.next_trial()
    sweep.close()


def test_goal_and_score_are_the_sweeps_one_rule(open_new: Opener, tmp_path: Path) -> None:
    sweep = open_new(tmp_path)
    assert sweep.goal == "maximize"
    history = [{"val/accuracy": 0.7}, {"val/accuracy": math.nan}, {"val/accuracy": 0.6}]
    assert sweep.score({"val/accuracy": 0.65}, history) == 0.7  # best epoch, NaN ignored
    assert sweep.score({"val/accuracy": 0.8}, history) == 0.8  # the summary counts too
    assert sweep.score({}, [{"val/loss": 1.0}]) is None  # the metric was never logged
    sweep.close()


def test_attach_takes_a_trials_files_before_its_result(open_new: Opener, tmp_path: Path) -> None:
    sweep = open_new(tmp_path)
    ticket = sweep.next_trial()
    folder = tmp_path / "trial"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    assert isinstance(sweep.holds_artifacts, bool)
    sweep.attach(ticket, folder)
    sweep.finish(ticket, "completed", {"val/accuracy": 0.5}, [{"val/accuracy": 0.5}])
    assert folder.exists()  # the engine copies or leaves it; the agent's folder stays
    sweep.close()


def test_failed_and_stopped_trials_are_taken_back(open_new: Opener, tmp_path: Path) -> None:
    sweep = open_new(tmp_path)
    first = sweep.next_trial()
    sweep.finish(first, "failed", {}, [], "loss is nan")
    second = sweep.next_trial()
    assert second.number != first.number
    sweep.finish(second, "stopped", {"val/accuracy": 0.4}, [{"val/accuracy": 0.4}])
    sweep.close()
