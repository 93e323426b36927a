"""Ensembles of a sweep's stored trials: average class probabilities, chosen on validation only.

Every choice (which trials, how many, their weights) is made on the validation split; the test
set is only scored, once per ensemble, to report it beside the best single trial. Members must
share one validation split (same `split_seed` and `val_fraction`): trials on another split are left
out, since averaging them would score each on images another member trained on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from kmnist.errors import UserError
from kmnist.trainer.artifacts import Artifact, ranked


@dataclass(frozen=True)
class Scored:
    name: str  # "best single", "top 5 average", "greedy (Caruana)"
    members: dict[int, int]  # trial number -> weight (how often it was picked)
    val_accuracy: float
    test_accuracy: float
    val_loss: float


@dataclass(frozen=True)
class _Member:
    number: int
    val: np.ndarray
    test: np.ndarray


def ensembles(artifacts: list[Artifact], goal: str, top: int | None = None) -> list[Scored]:
    """The best single trial, the top-N average (N chosen on validation when not given) and a
    greedy ensemble selection (Caruana et al., 2004) with replacement, all scored."""
    members, val_y, test_y = _aligned(ranked(artifacts, goal))
    if top is not None and top > len(members):
        raise UserError(
            f"--top {top}: only {len(members)} stored trials share the best trial's validation "
            "split; lower --top or keep more trials (--keep-artifacts)"
        )
    n = top or _best_n(members, val_y)
    score = lambda name, picks: _score(name, picks, members, val_y, test_y)  # noqa: E731
    single = score("best single", Counter([0]))
    average = score(f"top {n} average", Counter(range(n)))
    greedy = score("greedy selection", _greedy(members, val_y, rounds=2 * max(n, 5)))
    return [single, average, greedy]


def _aligned(ranked_artifacts: list[Artifact]) -> tuple[list[_Member], np.ndarray, np.ndarray]:
    if not ranked_artifacts:
        raise UserError("no stored trial to ensemble: run some trials first")
    first = ranked_artifacts[0].arrays()
    members = []
    for artifact in ranked_artifacts:
        arrays = first if not members else artifact.arrays()
        same_split = np.array_equal(arrays["val_index"], first["val_index"])
        if not same_split or not np.array_equal(arrays["test_labels"], first["test_labels"]):
            continue  # another validation split (or another test set)
        members.append(_Member(artifact.number, arrays["val_probs"], arrays["test_probs"]))
    return members, first["val_labels"], first["test_labels"]


def _best_n(members: list[_Member], val_y: np.ndarray) -> int:
    """How many of the best trials to average: the N with the best validation accuracy."""
    total = np.zeros_like(members[0].val, dtype=np.float64)
    best_n, best_acc = 1, -1.0
    for n, member in enumerate(members, start=1):
        total += member.val
        acc = float((total.argmax(1) == val_y).mean())
        if acc > best_acc:
            best_n, best_acc = n, acc
    return best_n


def _greedy(members: list[_Member], val_y: np.ndarray, rounds: int) -> Counter[int]:
    """Add, with replacement, the member that most raises validation accuracy (then lowers log
    loss); stop when no addition helps."""
    picks: Counter[int] = Counter()
    total = np.zeros_like(members[0].val, dtype=np.float64)
    best = (-1.0, 0.0)
    for _ in range(rounds):
        k = sum(picks.values()) + 1
        trials = [_val_key((total + m.val) / k, val_y) for m in members]
        i = max(range(len(members)), key=lambda j: trials[j])
        if trials[i] <= best:
            break
        best = trials[i]
        picks[i] += 1
        total += members[i].val
    return picks


def _val_key(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float((probs.argmax(1) == y).mean()), -_log_loss(probs, y)


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, None)).mean())


def _score(
    name: str,
    picks: Counter[int],
    members: list[_Member],
    val_y: np.ndarray,
    test_y: np.ndarray,
) -> Scored:
    weight = sum(picks.values())
    val = sum(members[i].val * w for i, w in picks.items()) / weight
    test = sum(members[i].test * w for i, w in picks.items()) / weight
    return Scored(
        name,
        {members[i].number: w for i, w in sorted(picks.items())},
        float((val.argmax(1) == val_y).mean()),
        float((test.argmax(1) == test_y).mean()),
        _log_loss(val, val_y),
    )
