"""What `wandb agent` runs for the files in sweeps/: `python -m kmnist.wandb_entry --lr=... ...`.

The same as `kmnist-sweep train --wandb`, so a W&B sweep needs no other project code.
"""

from __future__ import annotations

import sys

from kmnist.cli import main


def run() -> None:
    main(["train", "--wandb", *sys.argv[1:]], prog_name="kmnist-sweep")


if __name__ == "__main__":
    run()
