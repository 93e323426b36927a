"""What a finished trial leaves on disk, and reading it back: config, weights, probabilities.

One folder per trial, `trial-NNNNN/` under the sweep's artifact folder:

    config.json   the resolved config, the sweep metric's value, the summary
    weights.pt    the network's state dict (none for kNN: it refits in seconds)
    probs.npz     class probabilities on the validation split and the test set, with the
                  validation indices (into the 60k training images) and both label vectors

A folder is written under a temporary name and renamed when complete, so a reader never sees
half a trial and a crash leaves no partial folder behind. `keep` bounds the folder: after each
save only the best `keep` trials by the sweep metric remain.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmnist.errors import UserError
from kmnist.trainer.data import CLASSES

DEFAULT_KEEP = 10
DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
"""What reading a damaged trial folder raises (a file missing, cut short or edited)."""
PREFIX = "trial-"
SPLITS = ("val", "test")


@dataclass(frozen=True)
class TrialOutputs:
    """What the trainer hands over besides metrics (kept by the agent, never sent to a sweep)."""

    probabilities: Mapping[str, np.ndarray]  # "val", "test" -> (n, 10) float32
    labels: Mapping[str, np.ndarray]  # "val", "test" -> (n,) int64
    val_index: np.ndarray  # the validation images' indices in the 60k training set
    state_dict: Mapping[str, Any] | None = None  # None for kNN


@dataclass(frozen=True)
class Artifact:
    """One stored trial, read back."""

    number: int
    folder: Path
    config: dict[str, Any]
    value: float | None
    summary: dict[str, Any]

    @property
    def weights(self) -> Path | None:
        path = self.folder / "weights.pt"
        return path if path.is_file() else None

    def arrays(self) -> dict[str, np.ndarray]:
        """probs.npz, checked: a file changed or cut short since the scan is one clear line."""
        try:
            return _read_arrays(self.folder / "probs.npz")
        except DAMAGED as exc:
            raise UserError(f"{self.folder / 'probs.npz'}: {_reason(exc)}; {_FIX}") from None


def folder_name(number: int) -> str:
    return f"{PREFIX}{number:05d}"


def save(
    root: Path,
    number: int,
    config: Mapping[str, Any],
    value: float | None,
    summary: Mapping[str, Any],
    outputs: TrialOutputs,
) -> Path:
    """Write one trial's folder atomically; raises OSError (disk full, read-only) to the caller."""
    import torch  # the only torch use here: weights are saved as torch does

    root.mkdir(parents=True, exist_ok=True)
    final = root / folder_name(number)
    tmp = root / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        meta = {"number": number, "config": dict(config), "value": value, "summary": dict(summary)}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1, default=float) + "\n")
        arrays = {f"{s}_probs": np.asarray(outputs.probabilities[s], np.float32) for s in SPLITS}
        arrays |= {f"{s}_labels": np.asarray(outputs.labels[s], np.int64) for s in SPLITS}
        np.savez(tmp / "probs.npz", val_index=np.asarray(outputs.val_index), **arrays)
        if outputs.state_dict is not None:
            torch.save(dict(outputs.state_dict), tmp / "weights.pt")
        shutil.rmtree(final, ignore_errors=True)  # a retried trial number replaces its folder
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_all(root: Path, skipped: list[str] | None = None) -> list[Artifact]:
    """Every complete, readable trial folder under `root`. A damaged one (a file missing, cut
    short or edited) is left out, never fatal; `skipped` gets one line saying which and why."""
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.glob(f"{PREFIX}*")):
        try:
            found.append(_read(folder))
        except DAMAGED as exc:
            if skipped is not None:
                skipped.append(f"left out {folder}: {_reason(exc)}; {_FIX}")
    return found


_FIX = "delete that trial folder to silence this, or rerun the trial"


def _read(folder: Path) -> Artifact:
    meta = json.loads((folder / "config.json").read_text())
    value = meta["value"]
    if not isinstance(value, int | float | None) or not isinstance(meta["number"], int):
        raise ValueError("config.json: 'number' or 'value' is not a number")
    config, summary = dict(meta["config"]), dict(meta["summary"])
    _read_arrays(folder / "probs.npz")
    return Artifact(meta["number"], folder, config, value, summary)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of probs.npz, with every name present and the shapes agreeing."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for split in SPLITS:
        probs, labels = arrays.get(f"{split}_probs"), arrays.get(f"{split}_labels")
        if probs is None or labels is None:
            raise ValueError(f"probs.npz has no {split} probabilities or labels")
        if probs.shape != (len(labels), len(CLASSES)) or labels.ndim != 1:
            shapes = f"{probs.shape}, labels {labels.shape}"
            raise ValueError(f"probs.npz: {split} probabilities {shapes}")
    if arrays.get("val_index", np.empty(0)).shape != arrays["val_labels"].shape:
        raise ValueError("probs.npz: val_index does not match the validation labels")
    return arrays


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"config.json has no {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{Path(exc.filename).name if exc.filename else 'a file'}: {exc.strerror}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def ranked(artifacts: list[Artifact], goal: str) -> list[Artifact]:
    """Best first by the sweep metric; trials with no value last."""
    sign = -1.0 if goal == "maximize" else 1.0

    def key(a: Artifact) -> tuple[bool, float, int]:
        missing = a.value is None or not math.isfinite(a.value)
        return missing, 0.0 if missing else sign * float(a.value), a.number

    return sorted(artifacts, key=key)


def prune(root: Path, keep: int, goal: str) -> list[int]:
    """Delete all but the best `keep` trial folders; returns the numbers removed."""
    removed = []
    for artifact in ranked(load_all(root), goal)[keep:]:
        shutil.rmtree(artifact.folder, ignore_errors=True)
        removed.append(artifact.number)
    for stale in root.glob(f".{PREFIX}*.tmp"):  # left by a killed writer
        if not _writer_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)
    return removed


def _writer_alive(tmp: Path) -> bool:
    try:
        pid = int(tmp.name.rsplit(".", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def find(root: Path, number: int) -> Artifact:
    for artifact in load_all(root):
        if artifact.number == number:
            return artifact
    raise UserError(
        f"trial {number}: no stored artifacts in {root} (only the best trials are kept; "
        "raise --keep-artifacts to keep more)"
    )


def load_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The network stored in a trial (or exported) folder, in eval mode, and its config.

    Inputs are what the trainer feeds it: float images in [0, 1], shape (n, 1, 28, 28).
    """
    import torch

    from kmnist.trainer.models import build_network
    from kmnist.trainer.params import resolve

    meta = json.loads((folder / "config.json").read_text())
    config = resolve(meta["config"])
    weights = folder / "weights.pt"
    if not weights.is_file():
        raise UserError(
            f"{folder}: no weights.pt (a {config['model']} trial stores none); "
            "refit it with `kmnist-sweep train` and the config in config.json"
        )
    model = build_network(config)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), config
