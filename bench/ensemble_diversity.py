"""How much can averaging trials of one family gain? Which test images its members get wrong.

Trains four short runs of the README's residual recipe on one validation split (`split_seed`
0): the recipe, the recipe with other hyperparameters, the recipe with another `seed`
(initialisation, batch order, augmentation draws), and both changed. Reports each run's test
errors, the errors each pair shares, what averaging each pair and all four gives, and the
images all four get wrong: in practice a floor for averages of such members. Also measures the
brush: the share of each image's ink (pixels above half) that survives a 3x3 grey erosion, for
the training images, the test images (no labels needed) and the test images all four get wrong.
`--set name=value` adds a knob to every variant (e.g. `--set aug_stroke=0.5`). Records the
machine in bench/results/ensemble_diversity-<time>.json.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/ensemble_diversity.py [--epochs 6] \
        [--set aug_stroke=0.5]
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from machine import describe, headline, save_record

from kmnist.trainer import data as kdata
from kmnist.trainer import train

RECIPE = dict(
    model="resnet", width=20, stages=3, blocks=1, dropout=0.1, optimizer="sgd", lr=0.2,
    momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", batch_size=256,
    label_smoothing=0.1, aug_shift=2, ema=0.995, tta=4,
)  # fmt: skip
OTHER_HPARAMS = dict(lr=0.3, label_smoothing=0.05, weight_decay=3e-4, aug_erasing=0.2)
VARIANTS = {
    "recipe": {},
    "other hyperparameters": OTHER_HPARAMS,
    "other seed": dict(seed=1),
    "other seed and hyperparameters": dict(seed=1, **OTHER_HPARAMS),
}


def thick_ink(images: np.ndarray) -> float:
    """Mean share of an image's ink that survives a 3x3 grey erosion: lower is a thinner brush."""
    x = torch.from_numpy(np.asarray(images)).float()[:, None] / 255
    ink = (x > 0.5).sum((1, 2, 3))
    kept = (-F.max_pool2d(-x, 3, stride=1, padding=1) > 0.5).sum((1, 2, 3))
    return float((kept / ink.clamp_min(1)).mean())


@click.command()
@click.option("--epochs", default=6, show_default=True)
@click.option("--set", "extra", multiple=True, help="name=value added to every variant")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(epochs: int, extra: tuple[str, ...], out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    load_before = os.getloadavg()
    data = kdata.load()
    probs, runs = {}, {}
    added = dict(item.split("=", 1) for item in extra)
    for name, change in VARIANTS.items():
        config = RECIPE | {"epochs": epochs} | added | change
        result = train.run(config, device="cpu", data=data)
        probs[name] = result.outputs.probabilities["test"]
        runs[name] = {k: result.summary[k] for k in ("val/accuracy", "test/accuracy", "wall_time")}
        print(name, runs[name], flush=True)
    labels = data.test_labels
    wrong = {name: set(np.flatnonzero(p.argmax(1) != labels).tolist()) for name, p in probs.items()}
    errors = lambda *names: int((sum(probs[n] for n in names).argmax(1) != labels).sum())  # noqa: E731
    pairs = {
        f"{a} + {b}": {"shared": len(wrong[a] & wrong[b]), "averaged": errors(a, b)}
        for a, b in itertools.combinations(VARIANTS, 2)
    }
    record = {
        "benchmark": "ensemble_diversity",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "recipe": RECIPE | {"epochs": epochs} | added,
        "variants": VARIANTS,
        "runs": runs,
        "test_errors": {name: len(w) for name, w in wrong.items()},
        "pairs": pairs,
        "all_four_averaged_errors": errors(*VARIANTS),
        "wrong_in_all_four": len(set.intersection(*wrong.values())),
        "wrong_in_any": len(set.union(*wrong.values())),
    }
    core = sorted(set.intersection(*wrong.values()))
    record["thick_ink"] = {
        "train": thick_ink(data.train_images),
        "test": thick_ink(data.test_images),
        "test, wrong in all four": thick_ink(np.asarray(data.test_images)[core]),
    }
    for pair, figures in pairs.items():
        print(f"{pair}: {figures['shared']} shared errors, {figures['averaged']} averaged")
    print(
        f"all four averaged: {record['all_four_averaged_errors']} errors; wrong in all four: "
        f"{record['wrong_in_all_four']}, in any: {record['wrong_in_any']}"
    )
    print("ink surviving a 3x3 erosion:", {k: round(v, 4) for k, v in record["thick_ink"].items()})
    print(f"recorded in {save_record(record, out)}")


if __name__ == "__main__":
    main()
