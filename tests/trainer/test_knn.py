"""kNN on torch agrees with scikit-learn's KNeighborsClassifier on real KMNIST."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kmnist.trainer import data as kdata
from kmnist.trainer.models import KNNClassifier, knn, knn_kernels
from kmnist.trainer.params import resolve

CPU = torch.device("cpu")
KERNELS_HERE = knn_kernels.available(CPU)  # every exact path this machine can run


@pytest.fixture(scope="module")
def subset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = kdata.load(download=False)
    train = kdata.stratified_subset(d.train_labels, 4000, seed=1)
    test = kdata.stratified_subset(d.test_labels, 600, seed=1)
    return (d.train_images[train], d.train_labels[train], d.test_images[test], d.test_labels[test])


def _ours(config: dict, subset: tuple, kernel: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    xtr, ytr, xte, _ = subset
    model = KNNClassifier(resolve({"model": "knn", **config}), kernel=kernel)
    model.fit(torch.from_numpy(xtr), torch.from_numpy(ytr))
    proba = model.predict_proba(torch.from_numpy(xte)).numpy()
    return proba.argmax(1), proba


def _sklearn(config: dict, subset: tuple) -> tuple[np.ndarray, np.ndarray]:
    xtr, ytr, xte, _ = subset
    steps = [StandardScaler()] if config.get("standardize") else []
    if config.get("pca_components"):
        steps.append(PCA(config["pca_components"], svd_solver="full"))
    knn = KNeighborsClassifier(
        config.get("k", 4),
        weights=config.get("weights", "distance"),
        metric=config.get("metric", "euclidean"),
        algorithm="brute",
    )
    model = make_pipeline(*steps, knn).fit(xtr.reshape(len(xtr), -1).astype(np.float64), ytr)
    flat = xte.reshape(len(xte), -1).astype(np.float64)
    return model.predict(flat), model.predict_proba(flat)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_agrees_with_sklearn(subset: tuple, weights: str, metric: str) -> None:
    config = {"k": 5, "weights": weights, "metric": metric}
    if metric == "manhattan":  # torch.cdist's L1 is ~20x slower: 200 queries are enough
        xtr, ytr, xte, yte = subset
        subset = (xtr, ytr, xte[:200], yte[:200])
    ours, our_proba = _ours(config, subset)
    theirs, their_proba = _sklearn(config, subset)
    agree = ours == theirs
    assert agree.mean() >= 0.995  # tie-breaking between equidistant neighbours aside
    np.testing.assert_allclose(our_proba[agree], their_proba[agree], atol=1e-5)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize(
    "kernel",  # oneDNN's int8 path takes half a minute on CPUs without AMX: the full suite's
    [pytest.param(k, marks=pytest.mark.slow) if k == "onednn-int8" else k for k in KERNELS_HERE],
)
def test_every_exact_kernel_matches_sklearn_exactly(
    subset: tuple, kernel: str, weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knn, "TRAIN_TILE", 1008)  # 4 tiles, the last one partial
    config = {"k": 4, "weights": weights}
    if kernel == "onednn-int8":  # 45 s for 600 queries on a Zen 4; each query stands alone
        xtr, ytr, xte, yte = subset
        subset = (xtr, ytr, xte[:150], yte[:150])
    ours, our_proba = _ours(config, subset, kernel)
    theirs, their_proba = _sklearn(config, subset)
    assert np.array_equal(ours, theirs)
    np.testing.assert_allclose(our_proba, their_proba, rtol=1e-14, atol=0)


def test_the_machine_offers_its_fast_kernels() -> None:
    """The run-time choice sees what the CPU has (the same check as the kernels' own)."""
    flags = (
        set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    )
    assert KERNELS_HERE[-1] == "fp32"
    if {"amx_int8", "avx512_vnni"} & flags:
        assert {"onednn-int8", "int-mm"} <= set(KERNELS_HERE)
    if "avx512_bf16" in flags:
        assert "bf16" in KERNELS_HERE
    model = KNNClassifier(resolve({"model": "knn"})).fit(
        torch.zeros(40, 784, dtype=torch.uint8), torch.zeros(40, dtype=torch.long)
    )
    assert model.kernel in KERNELS_HERE


def _extreme_pixels(n: int, seed: int) -> torch.Tensor:
    """Images of 0s and 255s only, and the all-0 and all-255 images: the largest sums."""
    gen = torch.Generator().manual_seed(seed)
    coin = torch.randint(0, 2, (n, 784), generator=gen, dtype=torch.uint8) * 255
    return torch.cat(
        [coin, torch.zeros(1, 784, dtype=torch.uint8), torch.full((1, 784), 255, dtype=torch.uint8)]
    )


@pytest.mark.parametrize("kernel", KERNELS_HERE)
def test_kernel_scores_are_exact_at_the_largest_sums(kernel: str) -> None:
    train = (_extreme_pixels(300, 0).int() - 128).to(torch.int8)
    queries = (_extreme_pixels(60, 1).int() - 128).to(torch.int8)
    half_sq = train.int().square().sum(1).float() / 2
    scores = knn_kernels.build(kernel, train, half_sq)(queries).double()
    exact = (queries.double() @ train.double().T) - train.double().square().sum(1) / 2
    near = exact.abs() < knn_kernels.EXACT_SCORE  # the range the selection relies on
    assert torch.equal(scores[near], exact[near])
    assert ((scores - exact).abs() <= 1).all()  # one fp32 rounding beyond it


def _agree_exactly(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> None:
    data = (train_x, train_y, test_x, None)
    for kernel in KERNELS_HERE:
        for weights in ("uniform", "distance"):
            ours, our_proba = _ours({"k": 4, "weights": weights}, data, kernel)
            theirs, their_proba = _sklearn({"k": 4, "weights": weights}, data)
            assert np.array_equal(ours, theirs), (kernel, weights)
            np.testing.assert_allclose(our_proba, their_proba, rtol=1e-14, atol=0)


def test_queries_far_from_every_training_point_agree_with_sklearn() -> None:
    """k-th scores beyond fp32's exact range: those queries are redone in float64."""
    gen = np.random.default_rng(3)
    bright = gen.integers(230, 256, (300, 784), dtype=np.uint8)
    dark = gen.integers(0, 20, (30, 784), dtype=np.uint8)
    _agree_exactly(bright, gen.integers(0, 10, 300), dark)


def test_equal_distances_go_to_the_lower_index_as_in_sklearn(subset: tuple) -> None:
    """Duplicates with different labels put equal distances at the cut (and equal group
    maxima); scikit-learn's heap keeps the lower index, and so do we."""
    xtr, ytr, xte, _ = subset
    dupes = np.repeat(xtr[:3], 9, axis=0)
    train_x = np.concatenate([xtr[:500], dupes, xtr[500:1000]])
    train_y = np.concatenate([ytr[:500], np.arange(27) % 10, ytr[500:1000]])
    _agree_exactly(train_x, train_y, np.concatenate([xtr[:3], xte[:50]]))


@pytest.mark.parametrize(
    "config",
    [
        {"pca_components": 40},
        {"standardize": True},
        {"standardize": True, "pca_components": 40, "metric": "cosine"},
    ],
)
def test_preprocessing_agrees_with_sklearn_pipeline(subset: tuple, config: dict) -> None:
    ours, _ = _ours(config, subset)
    theirs, _ = _sklearn(config, subset)
    assert (ours == theirs).mean() >= 0.99


def test_accuracy_on_subset_is_far_above_chance(subset: tuple) -> None:
    ours, _ = _ours({"k": 4}, subset)
    assert (ours == subset[3]).mean() > 0.75


def test_query_equal_to_a_training_image_takes_its_label_alone() -> None:
    train = torch.tensor([[0, 0], [10, 10], [11, 11], [12, 12]], dtype=torch.uint8)
    labels = torch.tensor([3, 1, 1, 1])
    model = KNNClassifier(resolve({"model": "knn", "k": 4})).fit(train, labels)
    # distance 0 to the class-3 point: sklearn gives it the whole vote despite 3 class-1 points
    assert model.predict(torch.tensor([[0, 0]], dtype=torch.uint8)).tolist() == [3]
    uniform = KNNClassifier(resolve({"model": "knn", "k": 4, "weights": "uniform"}))
    assert uniform.fit(train, labels).predict(
        torch.tensor([[0, 0]], dtype=torch.uint8)
    ).tolist() == [1]


def test_k_larger_than_training_set_uses_every_point() -> None:
    train = torch.tensor([[0, 0], [9, 9]], dtype=torch.uint8)
    model = KNNClassifier(resolve({"model": "knn", "k": 10})).fit(train, torch.tensor([0, 1]))
    assert model.predict(torch.tensor([[1, 1]], dtype=torch.uint8)).tolist() == [0]


def test_prediction_workers_leave_the_thread_count_as_it_was(subset: tuple) -> None:
    before = torch.get_num_threads()
    ours, _ = _ours({"k": 4}, subset)
    assert torch.get_num_threads() == before
    torch.set_num_threads(1)  # one worker: the same predictions
    try:
        assert np.array_equal(_ours({"k": 4}, subset)[0], ours)
    finally:
        torch.set_num_threads(before)


def test_a_kernel_on_a_reference_path_is_screened_out_cheaply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel thousands of times slower (oneDNN's int8 linear on a Zen 4 EPYC) is timed
    only on the small screen, never on the full probe, and the other one is chosen."""
    built: list[tuple[int, ...]] = []

    def crawling(train: torch.Tensor, half_sq: torch.Tensor) -> knn_kernels.TileScores:
        built.append(tuple(train.shape))
        fast = knn_kernels.build("fp32", train, half_sq)
        # 82 ms on the screen: over ten times fp32's there even on a loaded machine (1e-6,
        # 8 ms, was not, with another test process on the other core)
        return lambda queries: (
            time.sleep(1e-5 * queries.numel() * len(train) / 784) or fast(queries)
        )

    here = (lambda: True, knn_kernels.KERNELS["fp32"][1])
    monkeypatch.setattr(
        knn_kernels,
        "KERNELS",
        {"onednn-int8": (lambda: True, crawling), "int-mm": here, "fp32": here},
    )
    knn_kernels.forget_choice()
    gen = torch.Generator().manual_seed(0)
    train = torch.randint(-128, 128, (4096, 784), generator=gen, dtype=torch.int8)
    probe = torch.randint(-128, 128, (512, 784), generator=gen, dtype=torch.int8)
    # One thread: with another test process on the other core, two OpenMP threads wait on each
    # other for tens of milliseconds and the fast kernel's screen time says nothing.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        chosen = knn_kernels.fastest(CPU, probe, train, train.float().square().sum(1) / 2)
    finally:
        torch.set_num_threads(threads)
    assert chosen == "int-mm"
    assert built == [(knn_kernels.SCREEN[1], 784)]  # never built at the probe's size
    assert time.perf_counter() - start < 2.0  # the full probe would have slept 20 s a call
    knn_kernels.forget_choice()
