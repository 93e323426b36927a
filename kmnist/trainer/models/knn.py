"""k-nearest neighbours on torch: batched brute force on any device.

Predictions follow scikit-learn's `KNeighborsClassifier` (brute force) for the same settings:
the same distances, the same `distance` weighting (a query that equals training points takes
their vote alone), and ties between classes go to the lowest label.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Distances are computed in tiles of QUERY_TILE x TRAIN_TILE (15 MB of int32/fp32), small
# enough to stay in the CPU's last-level cache between the matmul, the bias and the top-k.
QUERY_TILE = 512
TRAIN_TILE = 7500


class KNNClassifier:
    def __init__(self, config: dict[str, Any]) -> None:
        self.k = config["k"]
        self.weights = config["weights"]
        self.metric = config["metric"]
        self.pca_components = config["pca_components"]
        self.standardize = config["standardize"]
        # Raw pixels under the euclidean metric: exact integer arithmetic (see _prepare).
        self.exact = self.metric == "euclidean" and not self.standardize and not self.pca_components

    def fit(self, images: torch.Tensor, labels: torch.Tensor) -> KNNClassifier:
        """Store the training set; `images` is (n, ...) uint8 or float."""
        self.n_classes = int(labels.max()) + 1
        self.labels = labels.long()
        flat = images.flatten(1)
        self._fit_preprocessing(flat)
        self.train = self._prepare(flat)
        self.train_sq = _squared_norms(self.train)
        return self

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, classes), as scikit-learn's `predict_proba`."""
        queries = self._prepare(images.flatten(1))
        blocks = [
            self._votes(queries[i : i + QUERY_TILE]) for i in range(0, len(queries), QUERY_TILE)
        ]
        return torch.cat(blocks)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict_proba(images).argmax(1)  # argmax takes the first: lowest label

    # -- preprocessing, fitted on the training set as StandardScaler and PCA would be -------
    def _fit_preprocessing(self, flat: torch.Tensor) -> None:
        self.mean = self.scale = self.components = None
        if self.standardize:
            data = flat.double()
            self.mean = data.mean(0)
            std = data.std(0, unbiased=False)
            self.scale = torch.where(std > 0, std, torch.ones_like(std))
        if self.pca_components:
            data = self._standardized(flat)
            self.pca_mean = data.mean(0)
            centred = data - self.pca_mean
            eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred)
            self.components = eigvecs[:, eigvals.argsort(descending=True)[: self.pca_components]]

    def _standardized(self, flat: torch.Tensor) -> torch.Tensor:
        data = flat.double()
        return (data - self.mean) / self.scale if self.mean is not None else data

    def _prepare(self, flat: torch.Tensor) -> torch.Tensor:
        if self.exact:
            # Euclidean distance is shift-invariant: uint8 pixels shifted to int8 give exact
            # int32 distances from one integer matmul (VNNI on CPUs that have it).
            return (flat.int() - 128).to(torch.int8)
        data = self._standardized(flat)
        if self.components is not None:
            data = (data - self.pca_mean) @ self.components
        data = data.float()
        return F.normalize(data, dim=1) if self.metric == "cosine" else data

    # -- search ---------------------------------------------------------------------------
    def _scores(self, queries: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """A score per (query, training point) in [start, stop) that ranks as the distance."""
        train = self.train[start:stop]
        if self.metric == "manhattan":
            return torch.cdist(queries, train, p=1)
        dots = _matmul(queries, train)
        if self.metric == "cosine":
            return dots.neg_().add_(1)
        # |a - b|^2 without the |a|^2 term, which is the same for every b of one query.
        return torch.add(self.train_sq[start:stop], dots, alpha=-2, out=dots)

    def _neighbours(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (float64) and indices of each query's k nearest training points."""
        k = min(self.k, len(self.train))
        scores, indices = [], []
        for start in range(0, len(self.train), TRAIN_TILE):
            tile = self._scores(queries, start, start + TRAIN_TILE)
            s, i = tile.topk(min(k, tile.shape[1]), dim=1, largest=False, sorted=True)
            scores.append(s)
            indices.append(i + start)
        best, pick = torch.cat(scores, 1).topk(k, dim=1, largest=False, sorted=True)
        index = torch.cat(indices, 1).gather(1, pick)
        dist = best.double()
        if self.metric == "euclidean":
            dist = (dist + _squared_norms(queries).double()[:, None]).clamp_min_(0).sqrt_()
        return dist, index

    def _votes(self, queries: torch.Tensor) -> torch.Tensor:
        dist, index = self._neighbours(queries)
        votes = torch.zeros(
            len(queries), self.n_classes, dtype=torch.float64, device=queries.device
        )
        votes.scatter_add_(1, self.labels[index], self._vote_weights(dist))
        return votes / votes.sum(1, keepdim=True)

    def _vote_weights(self, dist: torch.Tensor) -> torch.Tensor:
        if self.weights == "uniform":
            return torch.ones_like(dist)
        exact = dist == 0
        inverse = 1.0 / dist.clamp_min(torch.finfo(dist.dtype).tiny)
        return torch.where(exact.any(1, keepdim=True), exact.double(), inverse)


def _squared_norms(data: torch.Tensor) -> torch.Tensor:
    return data.int().square().sum(1) if data.dtype == torch.int8 else data.square().sum(1)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T; for int8 inputs accumulated exactly in int32."""
    if a.dtype != torch.int8:
        return a @ b.T
    if a.device.type == "cpu":
        return torch._int_mm(a, b.T)  # oneDNN's int8 kernel
    # Elsewhere fp32 is exact too: every partial sum is an integer below 128 * 128 * 784 < 2**24.
    return (a.float() @ b.float().T).int()
