"""The best model out of a sweep: export it as a folder a user can load, or refit it on 60k."""

from __future__ import annotations

import json
import pickle
import shlex
import shutil
from pathlib import Path
from typing import Any

from kmnist.errors import UserError
from kmnist.results.atomic import new_folder
from kmnist.trainer.artifacts import Artifact, load_model
from kmnist.trainer.params import flatten_groups

README = """# {sweep_id}: trial {number}

The best trial of sweep `{sweep_id}` by `{metric}` on the validation split
(selected on validation; the test set was scored once, at the end of the trial).

| | |
|---|---|
| model | `{model}` |
| {metric} | {value} |
| test/accuracy | {test} |

`config.json` holds the full config and the trial's summary; `probs.npz` its class
probabilities on the validation split and the test set. {weights}

```python
from pathlib import Path

import torch
from kmnist.trainer.artifacts import load_model

model, config = load_model(Path({folder}))   # eval mode, on the CPU
# images: uint8 (n, 28, 28) as in the KMNIST npz files
logits = model(torch.from_numpy(images)[:, None].float() / 255)
```

Retrain it from scratch:

```bash
{retrain}
```
"""


def export(artifact: Artifact, out: Path, sweep_id: str, metric: str) -> Path:
    """Copy the trial's files into a new folder `out` with a README; never overwrites, and
    `out` appears only once complete."""
    if out.exists():
        raise UserError(f"{out}: already exists; name a new folder (nothing was written)")
    if artifact.weights is None and artifact.config.get("model") != "knn":
        raise UserError(
            f"{artifact.folder}: weights.pt is missing, so trial {artifact.number} cannot be "
            "exported (nothing was written); `--refit` retrains its config"
        )
    if artifact.weights is not None:
        _check_weights(artifact)
    try:
        with new_folder(out) as staging:
            shutil.copytree(artifact.folder, staging, dirs_exist_ok=True)
            readme = _readme(artifact, out, sweep_id, metric)
            (staging / "README.md").write_text(readme, encoding="utf-8")
    except OSError as exc:  # a read-only parent, a full disk: no half-written export is left
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _check_weights(artifact: Artifact) -> None:
    """The weights load into the network of the trial's config: an export is a model that loads."""
    try:
        load_model(artifact.folder)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        # torch's own messages run to paragraphs, and one suggests weights_only=False
        if str(exc).startswith("Error(s) in loading state_dict"):
            reason = "its tensors do not fit config.json's network"
        else:
            reason = "cut short, or not a PyTorch state dict"
        raise UserError(
            f"{artifact.weights}: damaged ({reason}), so trial {artifact.number} cannot be "
            "exported (nothing was written); `--refit` retrains its config"
        ) from None


def _readme(artifact: Artifact, out: Path, sweep_id: str, metric: str) -> str:
    config = artifact.config
    weights = (
        "`weights.pt` is the network's state dict (the weights it was evaluated with)."
        if artifact.weights
        else "A kNN stores no weights: it refits in seconds from the config."
    )
    return README.format(
        sweep_id=sweep_id,
        number=artifact.number,
        metric=metric,
        model=config.get("model"),
        value=_fmt(artifact.value),
        test=_fmt(artifact.summary.get("test/accuracy")),
        weights=weights,
        folder=repr(str(out)),
        retrain=retrain_command(config),
    )


def retrain_command(config: dict[str, Any]) -> str:
    """The `kmnist-sweep train` line for `config`, as a shell reads it: a nested group's
    parameters under their own names (the trainer's names are flat; W&B's agent passes a group
    as one dict literal, which only its entry point takes apart), each word quoted."""
    words = [f"--{name}={value}" for name, value in flatten_groups(config).items()]
    return shlex.join(["kmnist-sweep", "train", *words])


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_json(artifact: Artifact, metric: str) -> str:
    return json.dumps(
        {
            "trial": artifact.number,
            "config": artifact.config,
            metric: artifact.value,
            "test/accuracy": artifact.summary.get("test/accuracy"),
            "folder": str(artifact.folder),
        },
        indent=1,
        default=float,
    )
