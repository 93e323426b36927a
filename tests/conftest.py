"""Shared fixtures: the official KMNIST files, Hypothesis settings, W&B's stand-in server, and
no agent process outliving its test. Helper functions live in engine_util.py (engines, the
CLI, one-line errors) and wandb_helpers.py (W&B runs and stand-ins), imported by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_util import end_started_agents
from hypothesis import settings
from wandb_helpers import FAKE_KEY, http_server

from kmnist.trainer.data import DATA_DIR_ENV, FILES

# Tests run commands in other folders: a relative data dir (CI passes ../shared/data/kmnist)
# must mean the same folder there.
if os.environ.get(DATA_DIR_ENV):
    os.environ[DATA_DIR_ENV] = str(Path(os.environ[DATA_DIR_ENV]).expanduser().resolve())

# Under pytest-xdist, one test process per core: torch's own threads (one per core each) would
# oversubscribe the cores, and OpenMP's spinning workers then wait on each other (measured: a
# 7 s resnet test took 96 s beside another worker). One thread per test process; the agents and
# trainers a test starts as processes choose their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

# No example database: the property tests are cheap to rerun and must not litter the checkout.
settings.register_profile("kmnist", database=None, deadline=None)
settings.load_profile("kmnist")


@pytest.fixture(scope="session")
def kmnist_dir() -> Path:
    """The folder named by $KMNIST_DATA_DIR, checked to hold all eight official files."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        pytest.fail(
            f"{DATA_DIR_ENV} is not set: these tests read the official KMNIST files; run e.g. "
            f"`{DATA_DIR_ENV}=/work/shared/data/kmnist python -m pytest tests`",
            pytrace=False,
        )
    folder = Path(value).expanduser()
    missing = [
        name for fmt in FILES.values() for name, _ in fmt.values() if not (folder / name).is_file()
    ]
    if missing:
        pytest.fail(
            f"{DATA_DIR_ENV}={value} lacks {', '.join(missing)}: point it at a folder holding "
            "the eight official KMNIST files (4 npz, 4 idx .gz)",
            pytrace=False,
        )
    return folder


@pytest.fixture
def wandb_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A key and a server that answers (401 to all), so the checks before each call pass."""
    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)  # W&B's calls (and our stand-ins) set WANDB_* variables
    with http_server(status=401) as url:
        os.environ["WANDB_BASE_URL"] = url
        yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def no_agent_outlives_its_test() -> Iterator[None]:
    """Every test: the agent processes it started (engine_util.tracked) end with it."""
    yield
    end_started_agents()
