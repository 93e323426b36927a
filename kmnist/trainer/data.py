"""The official KMNIST files: find, download (md5-checked), load, and split.

The data folder is `--data-dir` if given, else `$KMNIST_DATA_DIR`, else the user cache dir. A
folder that already holds the verified files is used as it is, with no network. Downloads go to a
`.part` file that is renamed only once its md5 matches, so a partial or corrupt file is never
used.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import platformdirs

from kmnist.errors import UserError
from kmnist.trainer.params import ConfigError

OFFICIAL_BASE_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
MIRROR_ENV = "KMNIST_MIRROR"  # base URL of a mirror (http://, https:// or file://)
DATA_DIR_ENV = "KMNIST_DATA_DIR"

# The official release: (split, part) -> (file name, md5). URLs are OFFICIAL_BASE_URL + name.
FILES: dict[str, dict[tuple[str, str], tuple[str, str]]] = {
    "npz": {
        ("train", "images"): ("kmnist-train-imgs.npz", "a183fbc01ed9a345513b145673d3d0bb"),
        ("train", "labels"): ("kmnist-train-labels.npz", "b0e1d240e8afec72b50437fc3bc5908a"),
        ("test", "images"): ("kmnist-test-imgs.npz", "dace6de62ca8b90843cc45366337d02e"),
        ("test", "labels"): ("kmnist-test-labels.npz", "3ae489a79983d0fe386152684e3b5412"),
    },
    # The same arrays in MNIST's idx layout (as torchvision downloads them); read, never fetched.
    "idx": {
        ("train", "images"): ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
        ("train", "labels"): ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
        ("test", "images"): ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
        ("test", "labels"): ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
    },
}

# Romanised names of the ten classes, in label order (お き す つ な は ま や れ を).
CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
FIX_HINT = f"set {DATA_DIR_ENV}=DIR to a folder holding them, or run `kmnist-sweep data download`"


class DataError(UserError):
    """The KMNIST files are missing, corrupt or unreadable."""


@dataclass(frozen=True, eq=False)  # hashed by identity: a loaded release is cached
class Kmnist:
    """The full official release as uint8 arrays, and where it was read from."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    folder: Path
    format: str


def data_folder(data_dir: str | os.PathLike | None = None) -> Path:
    """Where the files live: `data_dir`, else $KMNIST_DATA_DIR, else the user cache dir."""
    named = f"--data-dir {data_dir}" if data_dir else None
    if not named and os.environ.get(DATA_DIR_ENV):
        named = f"{DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]}"
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or platformdirs.user_cache_dir("kmnist-sweep")
    folder = Path(chosen).expanduser()
    if folder.exists() and not folder.is_dir():
        raise DataError(
            f"{named or folder} is a file, not a folder: "
            "point it at the folder holding the KMNIST files"
        )
    return folder


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return digest.hexdigest()


def _unreadable(path: Path, exc: OSError) -> DataError:
    return DataError(f"cannot read {path}: {exc.strerror or exc}; make it readable, or {FIX_HINT}")


def verify_folder(folder: Path, fmt: str) -> list[str]:
    """Problems with `folder`'s files of format `fmt`: [] when all four match their md5."""
    problems = []
    for name, expected in FILES[fmt].values():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif (actual := md5sum(path)) != expected:
            problems.append(f"{path}: md5 {actual}, expected {expected} (corrupt or partial)")
    return problems


def locate(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data folder and the format of the complete, verified set it holds."""
    folder = data_folder(data_dir)
    corrupt: list[str] = []
    for fmt in FILES:
        problems = verify_folder(folder, fmt)
        if not problems:
            return folder, fmt
        corrupt += [p for p in problems if " md5 " in p]
    if corrupt:
        raise DataError(
            f"corrupt KMNIST file {corrupt[0]}; delete it and run `kmnist-sweep data download`"
        )
    raise DataError(f"KMNIST files not found in {folder}; {FIX_HINT}")


def load(data_dir: str | os.PathLike | None = None, download: bool = True) -> Kmnist:
    """The verified release, downloaded into the data folder first if it is not there."""
    try:
        folder, fmt = locate(data_dir)
    except DataError:
        if not download:
            raise
        folder, fmt = fetch(data_folder(data_dir)), "npz"
    return _read(folder, fmt)


@lru_cache(maxsize=2)
def _read(folder: Path, fmt: str) -> Kmnist:
    read = _read_npz if fmt == "npz" else _read_idx
    arrays = {}
    for key, (name, _) in FILES[fmt].items():
        try:
            arrays[key] = read(folder / name)
        except OSError as exc:  # checked a moment ago: replaced or made unreadable since
            raise _unreadable(folder / name, exc) from None
    return Kmnist(
        arrays["train", "images"],
        arrays["train", "labels"],
        arrays["test", "images"],
        arrays["test", "labels"],
        folder,
        fmt,
    )


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path) as npz:
        return npz["arr_0"]


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def fetch(folder: Path, retries: int = 3, progress: bool = True) -> Path:
    """Download the npz files missing or corrupt in `folder`; every file md5-checked."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot make the data folder {folder}: {exc.strerror or exc}; {FIX_HINT}"
        ) from None
    base = os.environ.get(MIRROR_ENV) or OFFICIAL_BASE_URL
    for name, expected in FILES["npz"].values():
        target = folder / name
        if target.is_file() and md5sum(target) == expected:
            continue
        _download(base.rstrip("/") + "/" + name, target, expected, retries, progress)
    return folder


def _download(url: str, target: Path, expected: str, retries: int, progress: bool) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    part = target.with_name(target.name + ".part")
    last_error = "no download attempted"
    with Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        for attempt in range(max(retries, 1)):
            task = bar.add_task(f"{target.name} (try {attempt + 1})", total=None)
            try:
                actual = _stream(
                    url, part, lambda n, total, t=task: bar.update(t, advance=n, total=total)
                )
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                last_error = f"cannot download {url}: {getattr(exc, 'reason', exc)}"
            else:
                if actual == expected:
                    os.replace(part, target)
                    return
                last_error = (
                    f"downloaded {target.name} has md5 {actual}, expected {expected} (from {url})"
                )
            finally:
                bar.remove_task(task)
            part.unlink(missing_ok=True)
            time.sleep(min(2**attempt, 4) if attempt + 1 < retries else 0)
    raise DataError(f"{last_error}; KMNIST files not found in {target.parent}: {FIX_HINT}")


def _stream(url: str, part: Path, advance: Callable[[int, int | None], None]) -> str:
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        while block := response.read(1 << 16):
            out.write(block)
            digest.update(block)
            advance(len(block), total)
    return digest.hexdigest()


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: `val_fraction` of the items to validation, each class in
    proportion, seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    return _split(labels, round(len(labels) * val_fraction), seed)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-balanced subset of exactly `size` items (all when size is 0)."""
    classes = len(np.unique(labels))
    if 0 < size < classes:
        raise ConfigError(
            f"parameter 'train_size': expected 0 (all images) or at least {classes} "
            f"(one image per class), got {size}"
        )
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    return _split(labels, size, seed)[1]


def _split(labels: np.ndarray, n_picked: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, picked): `n_picked` indices drawn per class in proportion to its size."""
    classes, sizes = np.unique(labels, return_counts=True)
    quotas = sizes * n_picked / len(labels)
    counts = np.floor(quotas).astype(int)
    # Largest remainders get the leftover items, so the counts add up to n_picked exactly.
    leftover = np.argsort(counts - quotas, kind="stable")[: n_picked - counts.sum()]
    counts[leftover] += 1
    rng = np.random.default_rng(seed)
    rest, picked = [], []
    for cls, count in zip(classes, counts, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        picked.append(members[:count])
        rest.append(members[count:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(picked))
