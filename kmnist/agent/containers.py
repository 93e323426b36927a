"""Agent containers through the Docker SDK, each pinned to its own GPU (`kmnist-sweep launch`).

`plan` gives replica i GPU i (more replicas than GPUs: round robin, several agents per GPU; no
GPUs: CPU agents sharing the cores); `start` runs them detached; `down` stops (SIGTERM, then the
grace period the agent needs to end its trial at the next epoch) and removes every container
`start` made, found by label.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kmnist.agent.spawn import gpu_ids
from kmnist.errors import UserError, first_line
from kmnist.masking import mask

LABEL = "io.kmnist-sweep.agent"  # on every container launch starts: --down finds them by it
SWEEP_LABEL = "io.kmnist-sweep.sweep"
DEFAULT_IMAGE = "kmnist-sweep:latest"
DATA_VOLUME = "kmnist-data"  # shared by the replicas: the data is downloaded once
GRACE_SECONDS = 120  # as compose's stop_grace_period
# Passed on from the caller's environment when set; never written into the image.
PASSED_ENV = ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE")


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
    ids = gpu_ids(value)
    if ids is not None:
        return ids
    found = count()
    if not found:
        raise UserError("--gpus all: no GPU found on this host; leave --gpus out for the CPU")
    return [str(i) for i in range(found)]


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
    from kmnist.backends import is_host_local  # imports optuna: only when launching

    if storage and is_host_local(storage):
        raise UserError(
            f"--storage {mask(storage)}: a journal file on this host is out of the containers' "
            "reach; use postgresql://... or redis://... "
            "(e.g. the compose `offline` profile's postgres)"
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


def launch(
    client: Any, specs: Sequence[AgentSpec], image: str, network: str | None, volume: str
) -> list[Any]:
    """`start`, with Docker's refusals as one line each."""
    import docker

    try:
        return start(client, specs, image, network, volume)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {image} not found: build it with `docker compose build`") from None
    except docker.errors.APIError as exc:
        raise UserError(
            f"docker: {exc.explanation or first_line(exc)} "
            "(`kmnist-sweep launch --down` removes agents left from an earlier launch)"
        ) from None


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


def client() -> Any:
    """The Docker engine of the environment (DOCKER_HOST...), checked to answer."""
    import docker

    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise UserError(f"cannot reach the Docker engine: {first_line(exc)}") from None
    return engine
