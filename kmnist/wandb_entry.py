"""What `wandb agent` runs for the files in sweeps/: `python -m kmnist.wandb_entry --lr=... ...`.

The same as `kmnist-sweep train --wandb`, so a W&B sweep needs no other project code. W&B's
agent contract: parameters as `${args}` (`--name=value`, booleans as True/False, a nested group
as a dict literal), the typed values in the file at WANDB_SWEEP_PARAM_PATH (read when present),
and WANDB_SWEEP_ID / WANDB_RUN_ID, which `wandb.init` picks up so the run is the sweep's.
SIGTERM (how W&B's agent stops a hyperband loser) ends the run at its next epoch as stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kmnist.errors import UserError


def run(argv: Sequence[str] | None = None) -> None:
    from kmnist.backends.wandb.params import agent_params, as_arg
    from kmnist.cli import main

    try:
        params, rest = agent_params(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    args = [*rest, *(as_arg(name, value) for name, value in params.items())]
    main(["train", "--wandb", *args], prog_name="kmnist-sweep")


if __name__ == "__main__":
    run()
