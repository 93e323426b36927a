"""The KMNIST loader on the real, md5-verified files: search, verification, download, splits.

No mocks: files are real copies of the official release, downloads go over real HTTP to a local
mirror (`http.server` on 127.0.0.1), and the user cache dir is redirected to a tmp folder.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kmnist.errors import UserError
from kmnist.trainer import data
from kmnist.trainer.data import DATA_DIR_ENV, MIRROR_ENV, DataError
from kmnist.trainer.params import ConfigError

NPZ = [name for name, _ in data.FILES["npz"].values()]
IDX = [name for name, _ in data.FILES["idx"].values()]
MD5 = {name: md5 for fmt in data.FILES.values() for name, md5 in fmt.values()}
HINT = "kmnist-sweep data download"


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def copy_files(src: Path, dst: Path, names: list[str]) -> Path:
    """Plain, writable copies (the shared files are read-only; shutil.copy would keep that)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dst / name)
    return dst


def link_files(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dst / name).symlink_to(src / name)
    return dst


def part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part"))


@pytest.fixture(autouse=True)
def isolated_env(kmnist_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $KMNIST_DATA_DIR, a tmp user cache, and a dead mirror, so no test reaches the network.

    Returns the user-cache folder the loader will search (it does not exist yet).
    """
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Port 9 (discard) on loopback refuses connections: an accidental download fails fast.
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/")
    cache = tmp_path / "xdg-cache" / "kmnist-sweep"
    assert data.data_folder() == cache, "the user cache must be redirected to tmp"
    return cache


@pytest.fixture(scope="session")
def real(kmnist_dir: Path) -> data.Kmnist:
    return data.load(kmnist_dir, download=False)


# --- loading the real files -------------------------------------------------------------------


def test_load_real_npz(kmnist_dir: Path) -> None:
    kmnist = data.load(kmnist_dir, download=False)
    assert kmnist.format == "npz"
    assert kmnist.folder == kmnist_dir
    assert kmnist.train_images.shape == (60000, 28, 28)
    assert kmnist.train_labels.shape == (60000,)
    assert kmnist.test_images.shape == (10000, 28, 28)
    assert kmnist.test_labels.shape == (10000,)
    for array in (kmnist.train_images, kmnist.train_labels, kmnist.test_images, kmnist.test_labels):
        assert array.dtype == np.uint8
    assert np.bincount(kmnist.train_labels, minlength=11).tolist() == [6000] * 10 + [0]
    assert np.bincount(kmnist.test_labels, minlength=11).tolist() == [1000] * 10 + [0]
    assert len(data.CLASSES) == 10
    # Real images: dark background, full-range ink strokes, and not all alike.
    assert kmnist.train_images.min() == 0
    assert kmnist.train_images.max() == 255
    assert not np.array_equal(kmnist.train_images[0], kmnist.train_images[1])


def test_load_from_env_var(kmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(kmnist_dir))
    kmnist = data.load(download=False)
    assert kmnist.folder == kmnist_dir
    assert kmnist.format == "npz"


def test_load_idx_only_folder_matches_npz(
    kmnist_dir: Path, tmp_path: Path, real: data.Kmnist
) -> None:
    folder = copy_files(kmnist_dir, tmp_path / "idx-only", IDX)
    kmnist = data.load(folder, download=False)
    assert kmnist.format == "idx"
    assert kmnist.folder == folder
    for part in ("train_images", "train_labels", "test_images", "test_labels"):
        got, want = getattr(kmnist, part), getattr(real, part)
        assert got.dtype == np.uint8, part
        assert got.shape == want.shape, part
        assert np.array_equal(got, want), part


def test_verify_folder_real(kmnist_dir: Path, tmp_path: Path) -> None:
    assert data.verify_folder(kmnist_dir, "npz") == []
    assert data.verify_folder(kmnist_dir, "idx") == []
    problems = data.verify_folder(tmp_path, "npz")
    assert problems == [f"{tmp_path / name}: missing" for name in NPZ]


# --- which folder -----------------------------------------------------------------------------


def test_explicit_dir_beats_env(
    kmnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = copy_files(kmnist_dir, tmp_path / "explicit", IDX)
    monkeypatch.setenv(DATA_DIR_ENV, str(kmnist_dir))
    assert data.data_folder(explicit) == explicit
    assert data.data_folder(str(explicit)) == explicit
    assert data.data_folder() == kmnist_dir

    chosen = data.load(explicit, download=False)
    assert (chosen.folder, chosen.format) == (explicit, "idx")
    from_env = data.load(download=False)
    assert (from_env.folder, from_env.format) == (kmnist_dir, "npz")


def test_env_beats_user_cache(
    kmnist_dir: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    link_files(kmnist_dir, isolated_env, IDX)
    monkeypatch.setenv(DATA_DIR_ENV, str(kmnist_dir))
    assert data.locate() == (kmnist_dir, "npz")
    monkeypatch.delenv(DATA_DIR_ENV)
    assert data.locate() == (isolated_env, "idx")
    kmnist = data.load(download=False)
    assert (kmnist.folder, kmnist.format) == (isolated_env, "idx")


def test_explicit_dir_without_files_does_not_fall_back_to_env(
    kmnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(kmnist_dir))
    with pytest.raises(DataError) as info:
        data.locate(empty)
    assert str(empty) in str(info.value)
    assert str(kmnist_dir) not in str(info.value)


def test_data_folder_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.data_folder("~/kmnist") == tmp_path / "kmnist"
    monkeypatch.setenv(DATA_DIR_ENV, "~/from-env")
    assert data.data_folder() == tmp_path / "from-env"


def test_npz_preferred_over_idx_in_one_folder(kmnist_dir: Path) -> None:
    assert data.locate(kmnist_dir) == (kmnist_dir, "npz")


# --- missing, corrupt and partial files -------------------------------------------------------


def test_missing_files_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    with pytest.raises(DataError) as info:
        data.load(explicit, download=False)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "not found" in message
    assert str(explicit) in message
    assert HINT in message
    assert DATA_DIR_ENV in message
    assert "\n" not in message
    # Nothing was created or fetched.
    assert list(explicit.iterdir()) == []
    assert not isolated_env.exists()


@pytest.mark.parametrize("source", ["env", "cache"])
def test_missing_files_names_the_folder_looked_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path, source: str
) -> None:
    folder = isolated_env
    if source == "env":
        folder = tmp_path / "from-env"
        monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    with pytest.raises(DataError) as info:
        data.load(download=False)
    message = str(info.value)
    assert f"not found in {folder}" in message
    assert HINT in message
    assert not folder.exists()


def test_incomplete_set_is_not_found(kmnist_dir: Path, tmp_path: Path) -> None:
    folder = copy_files(kmnist_dir, tmp_path / "three", NPZ[:3])
    with pytest.raises(DataError, match="not found"):
        data.load(folder, download=False)


def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", NPZ + IDX)
def test_corrupt_file_is_named_with_both_md5s(kmnist_dir: Path, tmp_path: Path, name: str) -> None:
    names = NPZ if name in NPZ else IDX
    folder = copy_files(kmnist_dir, tmp_path / "copy", names)
    bad = folder / name
    flip_byte(bad)
    actual = md5_of(bad)
    assert actual != MD5[name]
    with pytest.raises(DataError) as info:
        data.load(folder, download=False)
    message = str(info.value)
    assert str(bad) in message
    assert actual in message
    assert MD5[name] in message
    assert "corrupt" in message
    assert HINT in message
    assert md5_of(bad) == actual, "a failed load must leave the file alone"


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_partial_file_is_named_with_both_md5s(
    kmnist_dir: Path, tmp_path: Path, keep: float
) -> None:
    folder = copy_files(kmnist_dir, tmp_path / "copy", NPZ)
    bad = folder / "kmnist-train-imgs.npz"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: int(len(raw) * keep)])
    actual = md5_of(bad)
    with pytest.raises(DataError) as info:
        data.load(folder, download=False)
    message = str(info.value)
    assert str(bad) in message
    assert actual in message
    assert MD5["kmnist-train-imgs.npz"] in message
    assert "partial" in message


def test_corrupt_explicit_dir_is_reported_even_with_good_env(
    kmnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_files(kmnist_dir, tmp_path / "copy", NPZ)
    flip_byte(folder / "kmnist-test-labels.npz")
    monkeypatch.setenv(DATA_DIR_ENV, str(kmnist_dir))
    with pytest.raises(DataError, match=r"corrupt KMNIST file .*kmnist-test-labels\.npz"):
        data.load(folder, download=False)


# --- downloads over HTTP from a local mirror --------------------------------------------------


@dataclass
class Mirror:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)
    fail_first: set[str] = field(default_factory=set)  # answered 503 on their first request
    drop: set[str] = field(default_factory=set)  # connection dropped mid-body

    def count(self, name: str) -> int:
        return self.requests.count("/" + name)


def make_handler(mirror: Mirror) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            mirror.requests.append(self.path)
            name = self.path.lstrip("/")
            if name in mirror.fail_first and mirror.count(name) == 1:
                self.send_error(503, "try again")
            elif name in mirror.drop:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"1000\r\n" + b"x" * 100)  # promises 4096 bytes, sends 100
                self.close_connection = True
            else:
                super().do_GET()

    return Handler


@pytest.fixture
def mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Mirror:
    root = tmp_path / "mirror"
    root.mkdir()
    mirror = Mirror(root, "")
    handler = functools.partial(make_handler(mirror), directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    mirror.url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv(MIRROR_ENV, mirror.url)
    return mirror


def test_load_downloads_from_mirror(
    kmnist_dir: Path, tmp_path: Path, mirror: Mirror, real: data.Kmnist
) -> None:
    copy_files(kmnist_dir, mirror.root, NPZ)
    target = tmp_path / "target" / "nested"  # does not exist yet
    kmnist = data.load(target, download=True)
    assert kmnist.folder == target
    assert kmnist.format == "npz"
    assert sorted(p.name for p in target.iterdir()) == sorted(NPZ)
    for name in NPZ:
        assert md5_of(target / name) == MD5[name], name
    assert part_files(target) == []
    assert mirror.requests == ["/" + name for name in NPZ]
    assert np.array_equal(kmnist.train_images, real.train_images)
    assert np.array_equal(kmnist.test_labels, real.test_labels)
    # A folder that holds the verified files is used as it is: no network.
    again = data.load(target, download=True)
    assert again.folder == target
    assert len(mirror.requests) == len(NPZ)


def test_truncated_download_is_rejected(kmnist_dir: Path, tmp_path: Path, mirror: Mirror) -> None:
    copy_files(kmnist_dir, mirror.root, NPZ)
    bad = mirror.root / "kmnist-test-labels.npz"
    bad.write_bytes(bad.read_bytes()[:1000])
    target = tmp_path / "target"
    with pytest.raises(DataError) as info:
        data.fetch(target, retries=2, progress=False)
    message = str(info.value)
    assert "md5" in message
    assert "kmnist-test-labels.npz" in message
    assert md5_of(bad) in message
    assert MD5["kmnist-test-labels.npz"] in message
    assert not (target / "kmnist-test-labels.npz").exists()
    assert part_files(target) == []
    assert mirror.count("kmnist-test-labels.npz") == 2, "retries=2 means two attempts"
    # The files before it in the list were downloaded and verified.
    for name in NPZ[:3]:
        assert md5_of(target / name) == MD5[name]


def test_file_missing_on_mirror(kmnist_dir: Path, tmp_path: Path, mirror: Mirror) -> None:
    copy_files(kmnist_dir, mirror.root, [n for n in NPZ if n != "kmnist-train-labels.npz"])
    target = tmp_path / "target"
    with pytest.raises(DataError) as info:
        data.fetch(target, retries=1, progress=False)
    message = str(info.value)
    assert "cannot download" in message
    assert mirror.url + "kmnist-train-labels.npz" in message
    assert HINT in message
    assert not (target / "kmnist-train-labels.npz").exists()
    assert part_files(target) == []
    assert mirror.count("kmnist-train-labels.npz") == 1


def test_retry_recovers_from_server_error(kmnist_dir: Path, tmp_path: Path, mirror: Mirror) -> None:
    copy_files(kmnist_dir, mirror.root, NPZ)
    target = copy_files(kmnist_dir, tmp_path / "target", NPZ[:3])
    mirror.fail_first.add("kmnist-test-labels.npz")
    assert data.fetch(target, retries=2, progress=False) == target
    assert md5_of(target / "kmnist-test-labels.npz") == MD5["kmnist-test-labels.npz"]
    assert mirror.requests == ["/kmnist-test-labels.npz"] * 2
    assert part_files(target) == []


def test_fetch_replaces_only_the_corrupt_file(
    kmnist_dir: Path, tmp_path: Path, mirror: Mirror
) -> None:
    copy_files(kmnist_dir, mirror.root, NPZ)
    target = copy_files(kmnist_dir, tmp_path / "target", NPZ)
    flip_byte(target / "kmnist-train-labels.npz")
    data.fetch(target, retries=1, progress=False)
    assert mirror.requests == ["/kmnist-train-labels.npz"]
    assert data.verify_folder(target, "npz") == []
    assert part_files(target) == []


def test_connection_dropped_mid_download(kmnist_dir: Path, tmp_path: Path, mirror: Mirror) -> None:
    copy_files(kmnist_dir, mirror.root, NPZ)
    mirror.drop.add("kmnist-train-imgs.npz")
    target = tmp_path / "target"
    with pytest.raises(DataError, match="cannot download"):
        data.fetch(target, retries=1, progress=False)
    assert part_files(target) == []


# --- stratified splits ------------------------------------------------------------------------


def test_stratified_split_sizes_and_partition(real: data.Kmnist) -> None:
    labels = real.train_labels
    train, val = data.stratified_split(labels, 0.1, seed=0)
    assert (len(train), len(val)) == (54000, 6000)
    assert np.bincount(labels[train], minlength=10).tolist() == [5400] * 10
    assert np.bincount(labels[val], minlength=10).tolist() == [600] * 10
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(60000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_stratified_split_is_seeded(real: data.Kmnist) -> None:
    labels = real.train_labels
    train_a, val_a = data.stratified_split(labels, 0.1, seed=7)
    train_b, val_b = data.stratified_split(labels, 0.1, seed=7)
    _, val_c = data.stratified_split(labels, 0.1, seed=8)
    assert np.array_equal(train_a, train_b)
    assert np.array_equal(val_a, val_b)
    assert not np.array_equal(val_a, val_c)
    # Different, but still stratified.
    assert np.bincount(labels[val_c], minlength=10).tolist() == [600] * 10


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(real: data.Kmnist, fraction: float) -> None:
    with pytest.raises(UserError, match="val_fraction"):
        data.stratified_split(real.train_labels, fraction, seed=0)


def test_stratified_subset_balanced(real: data.Kmnist) -> None:
    labels = real.train_labels
    subset = data.stratified_subset(labels, 1000, 0)
    assert len(subset) == 1000
    assert len(np.unique(subset)) == 1000
    assert np.bincount(labels[subset], minlength=10).tolist() == [100] * 10
    assert np.array_equal(subset, data.stratified_subset(labels, 1000, 0))
    assert not np.array_equal(subset, data.stratified_subset(labels, 1000, 1))


@pytest.mark.parametrize("size", [0, -1, 60000, 70000])
def test_stratified_subset_all(real: data.Kmnist, size: int) -> None:
    subset = data.stratified_subset(real.train_labels, size, 0)
    assert np.array_equal(subset, np.arange(60000))


@pytest.mark.parametrize("size", [10, 15, 1005])
def test_stratified_subset_has_requested_size(real: data.Kmnist, size: int) -> None:
    assert len(data.stratified_subset(real.train_labels, size, 0)) == size


@pytest.mark.parametrize("size", [1, 9])
def test_stratified_subset_below_one_per_class_is_refused(real: data.Kmnist, size: int) -> None:
    # Fewer images than classes cannot be class-balanced, and a trainer crashes on them.
    with pytest.raises(ConfigError, match="at least 10"):
        data.stratified_subset(real.train_labels, size, 0)
