"""`kmnist-sweep launch`: agent containers through the Docker SDK, each pinned to its own GPU.

`launch ID --replicas 4 --gpus all` starts four containers of the agent image, container i
holding GPU i only (more replicas than GPUs: round robin, several agents per GPU). Without
`--gpus` the agents run on the CPU. `launch --down` stops (SIGTERM, then the grace period the
agent needs to end its trial at the next epoch) and removes every container launch started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console

from kmnist.errors import UserError, first_line

LABEL = "io.kmnist-sweep.agent"  # on every container launch starts: --down finds them by it
SWEEP_LABEL = "io.kmnist-sweep.sweep"
DEFAULT_IMAGE = "kmnist-sweep:latest"
DATA_VOLUME = "kmnist-data"  # shared by the replicas: the data is downloaded once
GRACE_SECONDS = 120  # as compose's stop_grace_period
# Passed on from the caller's environment when set; never written into the image.
PASSED_ENV = ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE")

err_console = Console(stderr=True)


@dataclass
class AgentSpec:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None  # the one GPU id the container sees; None: CPU


def parse_gpus(value: str | None, count: Callable[[], int]) -> list[str]:
    """`--gpus` as GPU ids: None -> [] (CPU), 'all' -> every GPU of the host, '0,2' -> those."""
    if not value:
        return []
    if value == "all":
        found = count()
        if not found:
            raise UserError("--gpus all: no GPU found on this host; leave --gpus out for the CPU")
        return [str(i) for i in range(found)]
    ids = [part.strip() for part in value.split(",")]
    if not all(i.isdigit() for i in ids):
        raise UserError(f"--gpus {value!r}: expected 'all' or GPU numbers such as 0,1")
    return ids


def count_gpus() -> int:
    """GPUs on this host, as nvidia-smi lists them (0 where there is no driver)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def plan(
    sweep_id: str,
    replicas: int,
    gpus: Sequence[str],
    storage: str | None,
    env: dict[str, str] | None = None,
    cpus: int | None = None,
) -> list[AgentSpec]:
    """One container spec per replica; replica i gets GPU i (mod the GPU count)."""
    env = os.environ if env is None else env
    environment = {key: env[key] for key in PASSED_ENV if env.get(key)}
    if storage:
        environment["KMNIST_SWEEP_STORAGE"] = storage
    command = ["agent", sweep_id]
    if not gpus:  # CPU replicas share the cores instead of each taking them all
        threads = max(1, (cpus or os.cpu_count() or 1) // replicas)
        command += ["--threads", str(threads)]
    return [
        AgentSpec(
            name=f"kmnist-agent-{sweep_id}-{i}",
            command=command,
            environment={**environment, "SWEEP_ID": sweep_id},
            gpu=gpus[i % len(gpus)] if gpus else None,
        )
        for i in range(replicas)
    ]


def check_storage(storage: str | None) -> None:
    """A journal file on this host is not visible inside the containers."""
    from kmnist.backends.optuna.storage import journal_path  # imports optuna: only when launching

    if storage and journal_path(storage) is not None:
        raise UserError(
            f"--storage {storage}: a journal file on this host is out of the containers' reach; "
            "use postgresql://... or redis://... (e.g. the compose `offline` profile's postgres)"
        )


def start(
    client: Any, specs: Sequence[AgentSpec], image: str, network: str | None, volume: str
) -> list[Any]:
    """Run the containers (detached); returns them."""
    from docker.types import DeviceRequest

    containers = []
    for spec in specs:
        devices = [DeviceRequest(device_ids=[spec.gpu], capabilities=[["gpu"]])] if spec.gpu else []
        containers.append(
            client.containers.run(
                image,
                command=spec.command,
                name=spec.name,
                detach=True,
                environment=spec.environment,
                labels={LABEL: "1", SWEEP_LABEL: spec.command[1]},
                volumes={volume: {"bind": "/data", "mode": "rw"}},
                device_requests=devices,
                restart_policy={"Name": "on-failure", "MaximumRetryCount": 5},
                stop_signal="SIGTERM",
                network=network,
            )
        )
    return containers


def down(client: Any, sweep_id: str | None = None, grace: int = GRACE_SECONDS) -> list[str]:
    """Stop (in parallel, each with its grace period) and remove launch's containers."""
    labels = [LABEL] + ([f"{SWEEP_LABEL}={sweep_id}"] if sweep_id else [])
    containers = client.containers.list(all=True, filters={"label": labels})

    def stop_and_remove(container: Any) -> str:
        container.stop(timeout=grace)
        container.remove(v=True)  # and its anonymous volumes
        return container.name

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        return list(pool.map(stop_and_remove, containers))


def _client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise UserError(f"cannot reach the Docker engine: {first_line(exc)}") from None
    return client


@click.command()
@click.argument("sweep_id", required=False)
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--gpus", help="'all' or GPU ids such as 0,1: one GPU per container [default: CPU].")
@click.option(
    "--storage",
    envvar="KMNIST_SWEEP_STORAGE",
    show_envvar=True,
    help="Study storage the containers reach: postgresql://... or redis://...",
)
@click.option("--image", envvar="KMNIST_IMAGE", default=DEFAULT_IMAGE, show_default=True)
@click.option("--network", help="Docker network to join (e.g. the compose project's).")
@click.option("--data-volume", default=DATA_VOLUME, show_default=True, help="Volume at /data.")
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
        removed = down(_client(), sweep_id)
        err_console.print(f"removed {len(removed)} agent container(s)", highlight=False)
        return
    if not sweep_id:
        raise click.UsageError("give a SWEEP_ID to launch agents for, or --down")
    check_storage(storage)
    specs = plan(sweep_id, replicas, parse_gpus(gpus, count_gpus), storage)
    _run(_client(), specs, image, network, data_volume)


def _run(client: Any, specs: list[AgentSpec], image: str, network: str | None, volume: str) -> None:
    import docker

    from kmnist.backends.optuna.storage import mask

    try:
        containers = start(client, specs, image, network, volume)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {image} not found: build it with `docker compose build`") from None
    except docker.errors.APIError as exc:
        raise UserError(
            f"docker: {exc.explanation or first_line(exc)} "
            "(`kmnist-sweep launch --down` removes agents left from an earlier launch)"
        ) from None
    for spec, container in zip(specs, containers, strict=True):
        where = f"GPU {spec.gpu}" if spec.gpu else "CPU"
        storage = spec.environment.get("KMNIST_SWEEP_STORAGE")
        shown = f", storage {mask(storage)}" if storage else ""
        err_console.print(f"{container.name}: {where}{shown}", highlight=False)
