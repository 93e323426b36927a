"""The artifact store, ensembles and report pictures, on stored probabilities.

Probabilities here are made up (seeded) so each rule can be checked exactly; the end-to-end
tests with real trained trials are in tests/results/test_best_ensemble.py.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from kmnist.errors import UserError
from kmnist.results import pictures
from kmnist.results.ensemble import ensembles
from kmnist.trainer import artifacts
from kmnist.trainer.artifacts import TrialOutputs

N_VAL, N_TEST = 300, 400


def noisy_outputs(rng: np.random.Generator, skill: float, val_index: np.ndarray) -> TrialOutputs:
    """Probabilities that put `skill` extra mass on the true class, plus noise."""
    labels = {"val": np.arange(N_VAL) % 10, "test": np.arange(N_TEST) % 10}
    probs = {}
    for split, y in labels.items():
        p = rng.random((len(y), 10)) + skill * np.eye(10)[y]
        probs[split] = (p / p.sum(1, keepdims=True)).astype(np.float32)
    return TrialOutputs(probs, labels, val_index)


def store(root: Path, skills: list[float], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for number, skill in enumerate(skills):
        out = noisy_outputs(rng, skill, np.arange(N_VAL))
        value = float((out.probabilities["val"].argmax(1) == out.labels["val"]).mean())
        artifacts.save(root, number, {"model": "cnn", "k": number}, value, {}, out)


def test_save_is_atomic_and_reads_back(tmp_path: Path) -> None:
    store(tmp_path, [0.5, 1.0])
    found = artifacts.load_all(tmp_path)
    assert [a.number for a in found] == [0, 1]
    assert sorted(p.name for p in found[1].folder.iterdir()) == ["config.json", "probs.npz"]
    assert not list(tmp_path.glob(".*"))  # no temporary folder left
    arrays = found[1].arrays()
    assert arrays["val_probs"].shape == (N_VAL, 10) and arrays["test_labels"].shape == (N_TEST,)


def test_prune_keeps_the_best_n_by_the_goal(tmp_path: Path) -> None:
    store(tmp_path, [0.2, 1.5, 0.6, 3.0, 0.1])
    values = {a.number: a.value for a in artifacts.load_all(tmp_path)}
    removed = artifacts.prune(tmp_path, keep=2, goal="maximize")
    kept = sorted(values, key=lambda n: -values[n])[:2]
    assert sorted(a.number for a in artifacts.load_all(tmp_path)) == sorted(kept)
    assert sorted(removed) == sorted(set(values) - set(kept))
    artifacts.prune(tmp_path, keep=1, goal="minimize")  # the other way round keeps the worst
    assert [a.number for a in artifacts.load_all(tmp_path)] == [min(kept, key=values.get)]


def test_a_killed_writers_temporary_folder_is_cleaned(tmp_path: Path) -> None:
    store(tmp_path, [1.0])
    stale = tmp_path / ".trial-00007.999999999.tmp"  # no such pid
    stale.mkdir()
    artifacts.prune(tmp_path, keep=5, goal="maximize")
    assert not stale.exists()
    assert [a.number for a in artifacts.load_all(tmp_path)] == [0]


def test_ensemble_of_one_equals_the_trial(tmp_path: Path) -> None:
    store(tmp_path, [0.8])
    single, average, greedy = ensembles(artifacts.load_all(tmp_path), "maximize", top=1)
    arrays = artifacts.load_all(tmp_path)[0].arrays()
    test = float((arrays["test_probs"].argmax(1) == arrays["test_labels"]).mean())
    for scored in (single, average, greedy):
        assert scored.members == {0: 1}
        assert scored.test_accuracy == pytest.approx(test)


def test_averaging_weak_trials_beats_the_best_single_and_greedy_never_loses_on_val(
    tmp_path: Path,
) -> None:
    store(tmp_path, [0.35] * 8, seed=3)
    single, average, greedy = ensembles(artifacts.load_all(tmp_path), "maximize")
    assert average.val_accuracy > single.val_accuracy  # independent noise averages out
    assert average.test_accuracy > single.test_accuracy
    assert greedy.val_accuracy >= single.val_accuracy
    assert sum(average.members.values()) == int(average.name.split()[1])


def test_trials_on_another_validation_split_are_left_out(tmp_path: Path) -> None:
    store(tmp_path, [1.0, 0.9])
    rng = np.random.default_rng(9)
    other = noisy_outputs(rng, 5.0, np.arange(N_VAL) + 1)  # best value, other split
    artifacts.save(tmp_path, 9, {"model": "cnn"}, 0.2, {}, other)
    members = set().union(*(s.members for s in ensembles(artifacts.load_all(tmp_path), "maximize")))
    assert 9 not in members


def test_top_beyond_the_stored_trials_and_an_empty_store_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no stored trial"):
        ensembles([], "maximize")
    store(tmp_path, [1.0, 2.0])
    with pytest.raises(UserError, match="--top 5: only 2 stored trials"):
        ensembles(artifacts.load_all(tmp_path), "maximize", top=5)


def test_confusion_counts_and_the_png_decodes() -> None:
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    counts = pictures.confusion(y_true, y_pred)
    assert counts.sum() == 6 and counts[0, 1] == 1 and counts[2, 0] == 1 and counts[2, 2] == 2
    image = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    data = pictures.png(image, scale=2)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (56, 56)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    rows = zlib.decompress(data[idat + 4 : idat + 4 + length])
    first_row = np.frombuffer(rows[1 : 1 + 56], np.uint8)
    assert np.array_equal(first_row, np.repeat(image[0], 2))


def test_misclassified_grid_shows_the_most_confident_errors_first() -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    y_true = np.array([0, 1, 2, 3])
    probs = np.full((4, 10), 0.01)
    probs[0, 0] = probs[1, 5] = 0.9  # right, wrong (confident)
    probs[2, 7] = 0.5  # wrong (less so)
    probs[3, 3] = 0.9  # right
    page = pictures.misclassified_grid(images, y_true, probs)
    assert page.count("<figure>") == 2
    assert page.index("#1<br>") < page.index("#2<br>")
    assert "true き ki" in page and "pred は ha" in page


def _cut_short(folder: Path) -> None:
    npz = folder / "probs.npz"
    npz.write_bytes(npz.read_bytes()[:1000])


def _wrong_shape(folder: Path) -> None:
    with np.load(folder / "probs.npz") as npz:
        arrays = dict(npz)
    arrays["test_probs"] = arrays["test_probs"][:, :9]
    np.savez(folder / "probs.npz", **arrays)


DAMAGE = {
    "probs.npz deleted": lambda f: (f / "probs.npz").unlink(),
    "probs.npz cut short": _cut_short,
    "probs.npz emptied": lambda f: (f / "probs.npz").write_bytes(b""),
    "probs.npz of the wrong shape": _wrong_shape,
    "config.json deleted": lambda f: (f / "config.json").unlink(),
    "config.json not JSON": lambda f: (f / "config.json").write_text("{"),
    "config.json a list": lambda f: (f / "config.json").write_text("[1]"),
    "config.json without a value": lambda f: (f / "config.json").write_text('{"number": 1}'),
    "config.json with a text value": lambda f: (f / "config.json").write_text(
        '{"number": 1, "value": "high", "config": {}, "summary": {}}'
    ),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_trial_folder_is_left_out_with_a_line_saying_why(
    tmp_path: Path, damage: object
) -> None:
    store(tmp_path, [0.5, 3.0, 1.0])  # trial 1 is the best
    damaged = tmp_path / artifacts.folder_name(1)
    damage(damaged)
    skipped: list[str] = []
    found = artifacts.load_all(tmp_path, skipped)
    assert [a.number for a in found] == [0, 2]
    assert len(skipped) == 1 and str(damaged) in skipped[0] and "delete" in skipped[0]
    assert "\n" not in skipped[0]
    single, *_ = ensembles(found, "maximize")
    assert single.members == {2: 1}  # the best readable trial
    artifacts.prune(tmp_path, keep=1, goal="maximize")
    assert damaged.exists()  # a damaged folder is the user's to delete, never pruned


def test_probabilities_damaged_after_the_scan_are_one_line(tmp_path: Path) -> None:
    store(tmp_path, [1.0])
    (found,) = artifacts.load_all(tmp_path)
    _cut_short(found.folder)
    with pytest.raises(UserError, match=r"probs\.npz: .*delete that trial folder"):
        found.arrays()
