"""Durability of the journal file: a record torn anywhere costs that record and nothing else.

A real Optuna journal (studies, finished trials, a running one) is written through kmnist's
storage; then its last record is torn at every byte offset, as a crash, a full disk or a power
loss would leave it. Each torn copy must open through kmnist's storage with every earlier record
intact (compared with what Optuna alone reads from the journal cut before that record), opening
must leave the file byte for byte (a reader never writes; it says in one line what it skips),
and the next write must repair it (dropping the torn record, or ending one that lost only its
line end), say so on stderr, and leave a journal Optuna alone reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from kmnist.backends.optuna.journal import CorruptJournal
from kmnist.backends.optuna.storage import open_storage


def write_journal(path: Path, last_attr: Any) -> None:
    """Two studies, finished and pruned trials, and a running trial whose attr is last."""
    storage = open_storage(str(path), create=True)
    other = optuna.create_study(storage=storage, study_name="other")
    other.set_user_attr("sweep_yaml", "method: random")
    study = optuna.create_study(storage=storage, study_name="durable", direction="maximize")
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("model", ["cnn", "knn"])
        trial.report(0.5 + i / 10, step=1)
        if i == 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.9 + i / 100)
    running = study.ask()
    running.set_user_attr("config", last_attr)  # the record that gets torn


def optuna_alone(path: Path) -> BaseStorage:
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def contents(storage: BaseStorage) -> list[Any]:
    """Everything a storage holds, as plain data to compare."""
    studies = []
    for study in storage.get_all_studies():
        trials = [
            (
                t.number,
                t.state,
                t.params,
                t.values,
                t.user_attrs,
                t.system_attrs,
                t.intermediate_values,
                t.datetime_start,
                t.datetime_complete,
            )
            for t in storage.get_all_trials(study._study_id)
        ]
        studies.append((study.study_name, study.directions, study.user_attrs, trials))
    return studies


def check_torn_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], last_attr: Any, cuts: list[int] | None
) -> int:
    full = tmp_path / "full.journal"
    write_journal(full, last_attr)
    data = full.read_bytes()
    last = data.splitlines(keepends=True)[-1]
    head = data[: -len(last)]
    (tmp_path / "head.journal").write_bytes(head)
    before_last = contents(optuna_alone(tmp_path / "head.journal"))
    everything = contents(optuna_alone(full))
    assert before_last != everything  # the last record matters: its loss would show
    capsys.readouterr()
    torn = tmp_path / "torn.journal"
    offsets = range(len(last)) if cuts is None else cuts
    for cut in offsets:
        written = head + last[:cut]
        torn.write_bytes(written)
        assert contents(open_storage(str(torn))) == before_last, cut  # a torn record is skipped
        assert torn.read_bytes() == written, cut  # opening wrote nothing
        assert len(capsys.readouterr().err.splitlines()) == (1 if cut else 0), cut
        # The next write repairs: the record that lost only its line end is kept, else dropped.
        other = optuna.load_study(study_name="other", storage=open_storage(str(torn)))
        other.set_user_attr("n", cut)
        err = capsys.readouterr().err
        whole = cut == len(last) - 1  # only the line end was lost: the record is whole
        kept = data if whole else head
        assert torn.read_bytes().startswith(kept) and torn.read_bytes().count(b"\n") == (
            kept.count(b"\n") + 1
        ), cut
        if whole:
            assert "ended its last record" in err
        else:
            assert ("dropped its torn last record" in err) == (cut > 0), (cut, err)
        expected = everything if whole else before_last
        assert contents(optuna_alone(torn))[1:] == expected[1:], cut  # "other" got an attr
        assert optuna.load_study(study_name="other", storage=optuna_alone(torn)).user_attrs == {
            **expected[0][2],
            "n": cut,
        }
    return len(offsets)


def test_tearing_the_last_record_at_every_offset_loses_only_that_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tried = check_torn_copies(tmp_path, capsys, {"lr": 0.01, "model": "cnn", "épochs": 3}, None)
    assert tried > 100  # every byte offset of a record of some size


def test_tearing_a_record_larger_than_a_read_chunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The repair looks for the previous line end backwards, 64 KiB at a time.
    big = {"history": [{"epoch": i, "val/accuracy": i / 1000} for i in range(6000)]}
    size = len(str(big))
    assert size > 2 * 65536
    cuts = [0, 1, 2, 65535, 65536, 65537, 131073, size // 2]
    check_torn_copies(tmp_path, capsys, big, cuts)


def test_a_record_torn_in_the_middle_names_its_line_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    write_journal(path, {"k": 1})
    lines = path.read_bytes().splitlines(keepends=True)
    glued = [*lines[:5], lines[5][:30] + lines[6], *lines[7:]]  # a writer that never repaired
    path.write_bytes(b"".join(glued))
    with pytest.raises(CorruptJournal, match=r"line 6 is not a JSON record.*head -n 5"):
        open_storage(str(path))
    assert path.read_bytes() == b"".join(glued)
