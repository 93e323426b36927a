"""The best model out of a real sweep: artifacts kept by a real agent, exported, reloaded,
ensembled and refit, through the real CLI and a journal file."""

from __future__ import annotations

import json
import resource
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_util import (
    CNN_SWEEP,
    KNN_SWEEP,
    assert_one_line_error,
    cli,
    create,
    finish_all,
    start_agents,
    sweep_file,
)

from kmnist.backends import artifact_dir, open_control
from kmnist.trainer import artifacts, train
from kmnist.trainer import data as kdata
from kmnist.trainer.params import resolve

# Runs the CLI, agents or servers as a user meets them: the full suite, not the fast subset.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, kmnist_dir: Path) -> tuple[str, str]:
    """A 4-trial CNN sweep run to its cap by one agent keeping the best 3 trials."""
    folder = tmp_path_factory.mktemp("sweep")
    journal = str(folder / "sweeps.journal")
    path = sweep_file(folder, CNN_SWEEP, run_cap=4, early_terminate=None)
    sweep_id = create(path, journal)
    codes = finish_all(start_agents(sweep_id, journal, 1, "--keep-artifacts", "3"), timeout=300)
    assert codes[0][0] == 0, codes
    return sweep_id, journal


def test_the_agent_keeps_the_best_n_trials(finished: tuple[str, str]) -> None:
    sweep_id, journal = finished
    folder = artifact_dir(sweep_id, journal)
    assert folder.parent == Path(journal).parent / "artifacts"
    kept = artifacts.load_all(folder)
    assert len(kept) == 3
    assert sorted(a.number for a in kept) == sorted(by_best_val(sweep_id, journal)[:3])
    assert all(a.weights is not None for a in kept)


def by_best_val(sweep_id: str, journal: str) -> list[int]:
    """Finished trials, best first by their best validation accuracy (the extremum)."""
    done = [r for r in open_control(sweep_id, journal).trials() if r.state == "completed"]
    return [r.number for r in sorted(done, key=lambda r: -r.summary["val/best_accuracy"])]


def test_best_exports_a_model_that_reloads_to_the_same_predictions(
    finished: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = finished
    done = cli("best", sweep_id, "--storage", journal, "--json", "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    winner = json.loads(done.stdout)
    assert winner["trial"] == by_best_val(sweep_id, journal)[0]
    model, config = artifacts.load_model(tmp_path / "m")
    assert "load_model" in (tmp_path / "m" / "README.md").read_text()
    test = kdata.load()
    x = torch.from_numpy(test.test_images)[:, None]
    # The config's own precision (auto: bf16 where the CPU has it), as the trial scored it.
    log_proba = train.predict_log_proba(model, config, x, torch.device("cpu"))
    stored = np.load(tmp_path / "m" / "probs.npz")["test_probs"]
    agree = (log_proba.argmax(1).numpy() == stored.argmax(1)).mean()
    assert agree > 0.999  # the same arithmetic; batch composition may flip a rare near-tie
    acc = float((log_proba.argmax(1).numpy() == test.test_labels).mean())
    assert acc == pytest.approx(winner["test/accuracy"], abs=0.005)


def test_ensemble_of_one_equals_the_best_trial(finished: tuple[str, str]) -> None:
    sweep_id, journal = finished
    done = cli("ensemble", sweep_id, "--storage", journal, "--top", "1", "--json")
    assert done.returncode == 0, done.stderr
    single, top1, _greedy = json.loads(done.stdout)
    best = json.loads(cli("best", sweep_id, "--storage", journal, "--json").stdout)
    assert top1["test_accuracy"] == pytest.approx(best["test/accuracy"])
    assert single["members"] == top1["members"] == {str(best["trial"]): 1}
    table = cli("ensemble", sweep_id, "--storage", journal)
    assert table.returncode == 0 and "greedy selection" in table.stdout


def test_bad_requests_are_one_line_and_touch_nothing(
    finished: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = finished
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    assert_one_line_error(
        cli("best", sweep_id, "--storage", journal, "--out", str(existing)), "already exists"
    )
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    assert_one_line_error(
        cli("ensemble", sweep_id, "--storage", journal, "--top", "9"), "--top 9: only 3"
    )
    empty = tmp_path / "elsewhere"
    assert_one_line_error(
        cli("best", sweep_id, "--storage", journal, "--artifacts", str(empty)),
        "no stored trial artifacts",
    )
    fresh = tmp_path / "never"
    for device, fragment in (("cuda:99", "--device cuda:99:"), ("banana", "not a device")):
        refit = ("--refit", "--device", device, "--out", str(fresh))
        assert_one_line_error(cli("best", sweep_id, "--storage", journal, *refit), fragment)
    assert not fresh.exists()  # the device is checked before the export is written
    assert_one_line_error(
        cli("best", sweep_id, "--storage", journal, "--device", "cpu"), "add --refit"
    )
    assert len(artifacts.load_all(artifact_dir(sweep_id, journal))) == 3


def test_an_export_that_cannot_be_written_leaves_nothing(
    finished: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = finished
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert_one_line_error(
        cli("best", sweep_id, "--storage", journal, "--out", str(a_file / "m")),
        f"cannot write {a_file / 'm'}",
    )
    full = tmp_path / "full"
    proc = cli(
        *("best", sweep_id, "--storage", journal, "--out", str(full)),
        # a disk that fills after 4 kB of any one file: the weights do not fit
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)),
    )
    assert_one_line_error(proc, f"cannot write {full}", "File too large")
    assert not full.exists()  # no half-written export
    assert len(artifacts.load_all(artifact_dir(sweep_id, journal))) == 3


def test_damaged_artifacts_are_named_and_left_out(
    finished: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id, journal = finished
    root = tmp_path / "kept"
    copy = root / sweep_id
    shutil.copytree(artifact_dir(sweep_id, journal), copy)
    winner = json.loads(cli("best", sweep_id, "--storage", journal, "--json").stdout)["trial"]
    (copy / artifacts.folder_name(winner) / "weights.pt").unlink()
    export = ("best", sweep_id, "--storage", journal)
    assert_one_line_error(
        cli(*export, "--artifacts", str(root), "--out", str(tmp_path / "m")),
        "weights.pt is missing",
        f"trial {winner}",
    )
    assert not (tmp_path / "m").exists()
    weights = artifact_dir(sweep_id, journal) / artifacts.folder_name(winner) / "weights.pt"
    state = torch.load(weights, weights_only=True)
    state[next(iter(state))] = torch.zeros(3)  # a tensor of another shape
    torch.save(state, misfit := tmp_path / "misfit.pt")
    damages = {
        "cut short": weights.read_bytes()[:1000],
        "not a PyTorch state dict": b"overwritten",
        "do not fit": misfit.read_bytes(),
    }
    for why, damage in damages.items():
        (copy / artifacts.folder_name(winner) / "weights.pt").write_bytes(damage)
        assert_one_line_error(
            cli(*export, "--artifacts", str(root), "--out", str(tmp_path / "m")),
            "weights.pt: damaged",
            why,
            f"trial {winner}",
        )
        assert not (tmp_path / "m").exists()
    npz = copy / artifacts.folder_name(winner) / "probs.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    done = cli("ensemble", sweep_id, "--storage", journal, "--artifacts", str(root), "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (warning,) = done.stderr.strip().splitlines()
    assert warning.startswith("warning: left out") and artifacts.folder_name(winner) in warning
    members = set().union(*(s["members"] for s in json.loads(done.stdout)))
    assert members and str(winner) not in members
    for folder in copy.glob("trial-*"):
        (folder / "probs.npz").unlink()
    assert_one_line_error(
        cli("ensemble", sweep_id, "--storage", journal, "--artifacts", str(root)),
        "no stored trial artifacts",
    )


def test_best_on_a_sweep_with_no_completed_trial(tmp_path: Path, kmnist_dir: Path) -> None:
    journal = str(tmp_path / "sweeps.journal")
    sweep_id = create(sweep_file(tmp_path, KNN_SWEEP), journal)
    assert_one_line_error(cli("best", sweep_id, "--storage", journal), "no completed trial")
    assert_one_line_error(cli("ensemble", sweep_id, "--storage", journal), "no completed trial")


@pytest.mark.slow
def test_refit_trains_on_all_60k_and_scores_test_once(kmnist_dir: Path) -> None:
    data = kdata.load()
    cfg = resolve({"model": "cnn", "l1_size": 4, "l2_size": 8, "fc1_size": 16, "epochs": 1})
    splits = train.make_splits(data, cfg, torch.device("cpu"), refit=True)
    assert len(splits.train_x) == 60_000 and not splits.has_val
    seen: list[dict] = []

    class Record:
        def report(self, epoch: int, metrics: dict) -> bool:
            seen.append(dict(metrics))
            return False

    result = train.run(cfg, Record(), "cpu", data, refit=True)
    assert result.status == "completed"
    assert "val/accuracy" not in result.summary and result.summary["test/accuracy"] > 0.5
    assert [set(m) for m in seen] == [{"epoch", "train/loss", "lr", "epoch_time"}]


def test_report_shows_the_best_trials_pictures(finished: tuple[str, str], tmp_path: Path) -> None:
    sweep_id, journal = finished
    done = cli("report", sweep_id, "--storage", journal, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / f"{sweep_id}.html").read_text()
    best = json.loads(cli("best", sweep_id, "--storage", journal, "--json").stdout)
    assert f"Best trial {best['trial']}: test confusion matrix" in page
    assert page.count('<img alt="test image') == page.count("<figure>") == 48
    assert "greedy selection" in page and "gain on test" in page
    assert "never used to choose" in page
