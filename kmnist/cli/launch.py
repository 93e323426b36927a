"""`kmnist-sweep launch`: agent containers through the Docker SDK, each pinned to its own GPU.

`launch ID --replicas 4 --gpus all` starts four containers of the agent image, container i
holding GPU i only (more replicas than GPUs: round robin, several agents per GPU). Without
`--gpus` the agents run on the CPU. `launch --down` stops and removes every container launch
started. The work is `kmnist.agent.containers`; this parses and renders.
"""

from __future__ import annotations

import click

from kmnist.agent import containers
from kmnist.cli.console import err_console
from kmnist.cli.options import MAX_AGENTS
from kmnist.masking import mask


@click.command()
@click.argument("sweep_id", required=False)
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, MAX_AGENTS))
@click.option("--gpus", help="'all' or GPU ids such as 0,1: one GPU per container [default: CPU].")
@click.option(
    "--storage",
    envvar="KMNIST_SWEEP_STORAGE",
    show_envvar=True,
    help="Study storage the containers reach: postgresql://... or redis://...",
)
@click.option("--image", envvar="KMNIST_IMAGE", default=containers.DEFAULT_IMAGE, show_default=True)
@click.option("--network", help="Docker network to join (e.g. the compose project's).")
@click.option(
    "--data-volume", default=containers.DATA_VOLUME, show_default=True, help="Volume at /data."
)
@click.option("--down", "take_down", is_flag=True, help="Stop and remove launched agents.")
def launch(
    sweep_id: str | None,
    replicas: int,
    gpus: str | None,
    storage: str | None,
    image: str,
    network: str | None,
    data_volume: str,
    take_down: bool,
) -> None:
    """Start agent containers for SWEEP_ID through Docker, each pinned to its own GPU."""
    if take_down:
        removed = containers.down(containers.client(), sweep_id)
        err_console.print(f"removed {len(removed)} agent container(s)", highlight=False)
        return
    if not sweep_id:
        raise click.UsageError("give a SWEEP_ID to launch agents for, or --down")
    containers.check_storage(storage)
    gpu_ids = containers.parse_gpus(gpus, containers.count_gpus)
    specs = containers.plan(sweep_id, replicas, gpu_ids, storage)
    started = containers.launch(containers.client(), specs, image, network, data_volume)
    _print_started(specs, started)


def _print_started(specs: list[containers.AgentSpec], started: list) -> None:
    for spec, container in zip(specs, started, strict=True):
        where = f"GPU {spec.gpu}" if spec.gpu else "CPU"
        storage = spec.environment.get("KMNIST_SWEEP_STORAGE")
        shown = f", storage {mask(storage)}" if storage else ""
        err_console.print(f"{container.name}: {where}{shown}", highlight=False)
