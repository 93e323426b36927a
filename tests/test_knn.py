"""kNN on torch agrees with scikit-learn's KNeighborsClassifier on real KMNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kmnist.trainer import data as kdata
from kmnist.trainer.models import KNNClassifier
from kmnist.trainer.params import resolve


@pytest.fixture(scope="module")
def subset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = kdata.load(download=False)
    train = kdata.stratified_subset(d.train_labels, 4000, seed=1)
    test = kdata.stratified_subset(d.test_labels, 600, seed=1)
    return (d.train_images[train], d.train_labels[train], d.test_images[test], d.test_labels[test])


def _ours(config: dict, subset: tuple) -> tuple[np.ndarray, np.ndarray]:
    xtr, ytr, xte, _ = subset
    model = KNNClassifier(resolve({"model": "knn", **config}))
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
    ours, our_proba = _ours(config, subset)
    theirs, their_proba = _sklearn(config, subset)
    agree = ours == theirs
    assert agree.mean() >= 0.995  # tie-breaking between equidistant neighbours aside
    np.testing.assert_allclose(our_proba[agree], their_proba[agree], atol=1e-5)


def test_exact_integer_path_matches_sklearn_exactly(subset: tuple) -> None:
    ours, our_proba = _ours({"k": 4}, subset)
    theirs, their_proba = _sklearn({"k": 4}, subset)
    assert np.array_equal(ours, theirs)
    np.testing.assert_allclose(our_proba, their_proba, atol=1e-12)


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
