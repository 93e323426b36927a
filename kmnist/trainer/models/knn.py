"""k-nearest neighbours on torch: batched brute force on any device.

Predictions follow scikit-learn's `KNeighborsClassifier` (brute force) for the same settings:
the same distances, the same `distance` weighting (a query that equals training points takes
their vote alone), and ties between classes go to the lowest label.

Raw pixels under the euclidean metric take an exact path: integer-exact scores from the fastest
matmul this machine offers, chosen at run time (`knn_kernels`), and a selection in which, as in
scikit-learn's neighbour heap, of two equidistant training points the lower index is nearer.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from kmnist.trainer.models import knn_kernels as kernels

QUERY_TILE = 256  # queries per block (one worker's unit of work)
TRAIN_TILE = 15360  # training points per kernel call; a multiple of GROUP
GROUP = 16  # the exact selection first keeps, per tile, the groups of 16 points with the best
# maxima: a max over 16 rows of the tile is a plain vector pass, 8x cheaper than a top-k on it
T = TypeVar("T")


class KNNClassifier:
    def __init__(self, config: dict[str, Any], kernel: str | None = None) -> None:
        """`kernel` forces one of `knn_kernels.KERNELS` on the exact path (default: the
        fastest this machine runs, timed once per process)."""
        self.k = config["k"]
        self.weights = config["weights"]
        self.metric = config["metric"]
        self.pca_components = config["pca_components"]
        self.standardize = config["standardize"]
        self.kernel = kernel

    def fit(self, images: torch.Tensor, labels: torch.Tensor) -> KNNClassifier:
        """Store the training set; `images` is (n, ...) uint8 or float."""
        self.n_classes = int(labels.max()) + 1
        self.labels = labels.long()
        flat = images.flatten(1)
        self.exact = (
            self.metric == "euclidean"
            and not self.standardize
            and not self.pca_components
            and flat.dtype == torch.uint8
            and flat.shape[1] <= kernels.MAX_EXACT_DIM
        )
        self._fit_preprocessing(flat)
        self.train = self._prepare(flat)
        if self.exact:
            self._fit_exact()
        else:
            self.train_sq = self.train.square().sum(1)
        return self

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, classes), as scikit-learn's `predict_proba`."""
        queries = self._prepare(images.flatten(1))
        blocks = [queries[i : i + QUERY_TILE] for i in range(0, len(queries), QUERY_TILE)]
        votes = _in_workers([partial(self._votes, block) for block in blocks], queries.device)
        return torch.cat(votes)

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
            # Euclidean distance is shift-invariant: uint8 pixels shifted to int8 (p - 128).
            return (flat ^ 128).view(torch.int8)
        data = self._standardized(flat)
        if self.components is not None:
            data = (data - self.pca_mean) @ self.components
        data = data.float()
        return F.normalize(data, dim=1) if self.metric == "cosine" else data

    # -- the exact path ---------------------------------------------------------------------
    def _fit_exact(self) -> None:
        """Cut the training set into tiles of whole groups (padding rows score -inf) and build
        the kernel for each, the tiles spread over the workers."""
        device = self.train.device
        starts = range(0, len(self.train), TRAIN_TILE)
        pieces = _in_workers([partial(_tile_rows, self.train, a) for a in starts], device)
        self.tile_rows, self.tile_half_sq = (list(side) for side in zip(*pieces, strict=True))
        self.bounds = [(a, a + len(rows)) for a, rows in zip(starts, self.tile_rows, strict=True)]
        self.index_bits = self.bounds[-1][1].bit_length()
        if self.kernel is None:  # timed as predict runs it, in a single-threaded worker
            first = (self.train[:QUERY_TILE], self.tile_rows[0], self.tile_half_sq[0])
            self.kernel = _in_workers([partial(kernels.fastest, device, *first)], device)[0]
        elif self.kernel not in kernels.available(device):
            raise ValueError(f"kNN kernel {self.kernel!r} does not run natively here")
        tiles = zip(self.tile_rows, self.tile_half_sq, strict=True)
        builds = [partial(kernels.build, self.kernel, *tile) for tile in tiles]
        self.tiles = _in_workers(builds, device)

    def _exact_neighbours(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(self.k, len(self.train))
        values, columns = [], []
        undecided = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
        for (start, _), scores in zip(self.bounds, self.tiles, strict=True):
            v, c, ambiguous = _tile_candidates(scores(queries), k)
            values.append(v)
            columns.append(c + start)
            undecided |= ambiguous
        best, index = self._best(torch.cat(values, 1).double(), torch.cat(columns, 1), k)
        undecided |= best[:, -1] <= -kernels.EXACT_SCORE  # a k-th score rounded in fp32
        if undecided.any():
            best[undecided], index[undecided] = self._exact_rows(queries[undecided], k)
        sq = queries.int().square().sum(1).double()
        return (sq[:, None] - 2 * best).clamp_min_(0).sqrt_(), index  # |x-y|^2 = |x|^2 - 2 s

    def _best(
        self, values: torch.Tensor, columns: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The k largest float64 scores, ties to the lower column: 2 * score is an integer
        (or -inf), so score * 2**(bits + 1) - column orders both at once, exactly."""
        key = values * 2.0 ** (self.index_bits + 1) - columns
        pick = key.topk(min(k, key.shape[1]), 1).indices
        return values.gather(1, pick), columns.gather(1, pick)

    def _exact_rows(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 scores against every tile, for the rare queries whose fp32 selection is
        not certain (equal group maxima at the cut, or a k-th neighbour very far away)."""
        values, columns = [], []
        tiles = zip(self.bounds, self.tile_rows, self.tile_half_sq, strict=True)
        for (a, b), rows, half_sq in tiles:
            dots = kernels.exact_dots(queries, rows.float().T).double()
            index = torch.arange(a, b, device=queries.device).expand(len(queries), -1)
            v, c = self._best(dots - half_sq.double(), index, k)
            values.append(v)
            columns.append(c)
        return self._best(torch.cat(values, 1), torch.cat(columns, 1), k)

    # -- the float path (cosine, manhattan, PCA, standardized) --------------------------------
    def _scores(self, queries: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """A score per (query, training point) in [start, stop) that ranks as the distance."""
        train = self.train[start:stop]
        if self.metric == "manhattan":
            return torch.cdist(queries, train, p=1)
        dots = queries @ train.T
        if self.metric == "cosine":
            return dots.neg_().add_(1)
        # |a - b|^2 without the |a|^2 term, which is the same for every b of one query.
        return torch.add(self.train_sq[start:stop], dots, alpha=-2, out=dots)

    def _float_neighbours(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
            dist = (dist + queries.square().sum(1).double()[:, None]).clamp_min_(0).sqrt_()
        return dist, index

    # -- votes ----------------------------------------------------------------------------------
    def _votes(self, queries: torch.Tensor) -> torch.Tensor:
        neighbours = self._exact_neighbours if self.exact else self._float_neighbours
        dist, index = neighbours(queries)
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


def _tile_rows(train: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows [start, start + TRAIN_TILE), padded to whole groups with zero rows, and
    their |y|^2 / 2 (exact in fp32: below 2**23), +inf for the padding."""
    rows = train[start : start + TRAIN_TILE]
    pad = -len(rows) % GROUP
    half_sq = rows.float().square_().sum(1).div_(2)
    if pad:
        rows = F.pad(rows, (0, 0, 0, pad))
        half_sq = F.pad(half_sq, (0, pad), value=float("inf"))
    return rows, half_sq


def _in_workers(calls: list[Callable[[], T]], device: torch.device) -> list[T]:
    """Each call in one of `torch.get_num_threads()` single-threaded worker threads (on GPUs
    and other devices, where the host only queues work, in this thread).

    Workers share no barrier, so a core taken by another process slows only the blocks on
    it: on a shared 2-core machine 4x faster than torch's own threads, on an idle one the same.
    """
    threads = torch.get_num_threads()
    if threads == 1 or device.type != "cpu":
        return [call() for call in calls]
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return [job.result() for job in [pool.submit(call) for call in calls]]
    finally:
        torch.set_num_threads(threads)  # MKL's thread count is process-wide: restore it


def _tile_candidates(
    scores: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scores and columns of the k groups with the largest maxima in one tile, and which
    queries had equal maxima at the cut (their k groups are not certain).

    Group c holds the columns c, c + w, ..., c + 15 w (w = width / 16). Any of the tile's k
    best points lies in one of those k groups: outside them, each of the k groups' maxima beats
    it. Within the groups, the caller's exact ordering decides.
    """
    rows, width = scores.shape
    stride = width // GROUP
    maxima = scores.view(rows, GROUP, stride).amax(1)
    top, groups = maxima.topk(min(k + 1, stride), 1)
    if stride > k:
        ambiguous = (top[:, k - 1] == top[:, k]) & (top[:, k - 1] > float("-inf"))
    else:
        ambiguous = torch.zeros(rows, dtype=torch.bool, device=scores.device)
    offsets = torch.arange(0, width, stride, device=scores.device)
    columns = (groups[:, None, :k] + offsets[None, :, None]).reshape(rows, -1)
    return scores.gather(1, columns), columns, ambiguous
