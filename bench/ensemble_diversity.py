"""How much can averaging trials of one family gain? Which test images its members get wrong.

Trains four short runs of the README's residual recipe on one validation split (`split_seed`
0): the recipe, the recipe with other hyperparameters, the recipe with another `seed`
(initialisation, batch order, augmentation draws), and both changed. Reports each run's test
errors, the errors each pair shares, what averaging each pair and all four gives, and the
images all four get wrong: a floor no average of such members goes below. Records the machine
in bench/results/ensemble_diversity-<time>.json.

    KMNIST_DATA_DIR=../shared/data/kmnist python bench/ensemble_diversity.py [--epochs 6]
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import click
import numpy as np
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


@click.command()
@click.option("--epochs", default=6, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"))
def main(epochs: int, out: Path) -> None:
    machine = describe()
    print(headline(machine), flush=True)
    load_before = os.getloadavg()
    data = kdata.load()
    probs, runs = {}, {}
    for name, change in VARIANTS.items():
        result = train.run(RECIPE | {"epochs": epochs} | change, device="cpu", data=data)
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
        "recipe": RECIPE | {"epochs": epochs},
        "variants": VARIANTS,
        "runs": runs,
        "test_errors": {name: len(w) for name, w in wrong.items()},
        "pairs": pairs,
        "all_four_averaged_errors": errors(*VARIANTS),
        "wrong_in_all_four": len(set.intersection(*wrong.values())),
        "wrong_in_any": len(set.union(*wrong.values())),
    }
    for pair, figures in pairs.items():
        print(f"{pair}: {figures['shared']} shared errors, {figures['averaged']} averaged")
    print(
        f"all four averaged: {record['all_four_averaged_errors']} errors; wrong in all four: "
        f"{record['wrong_in_all_four']}, in any: {record['wrong_in_any']}"
    )
    print(f"recorded in {save_record(record, out)}")


if __name__ == "__main__":
    main()
