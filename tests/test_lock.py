"""The pins: requirements.lock covers every dependency pyproject names, the image's lock is a part
of it at the same versions, and this environment runs what they pin (tools/lock.py writes them).
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RELOCK = "run `python tools/lock.py` (or `--upgrade`) and the tests"


def pins(path: str) -> dict[str, str]:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pairs}


def requirements(*extras: str) -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for extra in extras or tuple(project["optional-dependencies"]):
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("docker/requirements.lock", ("container",))]
)
def test_lock_pins_every_dependency_in_range(lock: str, extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    for req in requirements(*extras):
        name = canonicalize_name(req.name)
        if name in ("torch", "kmnist-sweep"):  # torch: the CPU wheel here, a CUDA build or
            assert name not in pinned  # base image elsewhere; the project: an extra of its own
            continue
        assert name in pinned, f"{name} is not in {lock}: {RELOCK}"
        assert req.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])
    assert not any(name.startswith("nvidia-") for name in pinned)


def test_image_lock_is_part_of_the_one_lock() -> None:
    """One resolve: the image runs the versions the test suite ran."""
    everything, image = pins("requirements.lock"), pins("docker/requirements.lock")
    assert {name: everything.get(name) for name in image} == image, RELOCK
    assert {"psycopg2-binary", "redis"} <= set(image)  # every multi-host storage's driver


def test_this_environment_runs_the_locked_versions() -> None:
    """A green suite means the pinned versions passed: an installed package that drifted fails."""
    drifted = {}
    for name, version in pins("requirements.lock").items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue  # an extra this install left out (bench, container)
        if installed != version:
            drifted[name] = f"{installed} installed, {version} locked"
    assert not drifted, f"{drifted}: install with `-c requirements.lock`, or {RELOCK}"


def test_every_package_installed_here_is_pinned() -> None:
    """Installed with `-c requirements.lock`, an unpinned package is one the lock's walk missed
    (e.g. one an extra of a dependency brings): a fresh machine would install its newest."""
    tools = {"pip", "setuptools", "wheel", "kmnist-sweep", "torch", "triton"}  # as tools/lock.py
    pinned = pins("requirements.lock")
    installed = {canonicalize_name(d.metadata["Name"]) for d in md.distributions()}
    loose = sorted(
        name for name in installed - pinned.keys() - tools if not name.startswith("nvidia-")
    )
    assert not loose, f"installed but not pinned: {', '.join(loose)}: {RELOCK}"
