"""No password or key leaves the process: planted in every place a user can put one, looked
for in everything the commands print and write.

A database password goes in the storage URL on the command line (percent-escaped `@ / :`, and
raw `/ :`), in $KMNIST_SWEEP_STORAGE (in the query string, `?password=`), and a W&B key in
$WANDB_API_KEY and in the netrc. Then each command runs for real: create, agent with offline W&B
runs, status, leaderboard, ls, report, sync --dry-run, launch's refusals, train --wandb, and a
storage that refuses the connection. Scanned for every form each secret travels in (raw,
percent-encoded, base64 as in a Basic header): stdout, stderr, every file under the test's
folders (home and data dir, storages, W&B runs, report), the shared data folder, the offline
`.wandb` files both raw and as `wandb leet inspect` reads them, and the study in PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import yaml
from engine_util import CLI, POSTGRES_URL, open_storage
from wandb_helpers import clean_env, inspect, offline_runs

from kmnist.agent import spawn
from kmnist.masking import mask, mask_argv

TAG = uuid.uuid4().hex[:10]
PASSWORD = f"Pw@Zq/9:{TAG}"  # needs escaping in a URL
RAW_PASSWORD = f"pa/ss:{TAG}"  # a raw / and : that SQLAlchemy still reads as the password
QUERY_PASSWORD = f"qs-{TAG}-secret"
WANDB_KEY = f"kmnistsecret{TAG}" + "0123456789abcdef" * 2  # a key's length and shape
NETRC_KEY = f"netrcsecret{TAG}" + "fedcba9876543210" * 2
SECRETS = (PASSWORD, RAW_PASSWORD, QUERY_PASSWORD, WANDB_KEY, NETRC_KEY)

HOST = "127.0.0.1:5432/test"  # trust auth: any password is accepted, so each one is used
ARGV_URL = f"postgresql://postgres:{quote(PASSWORD, safe='')}@{HOST}"
RAW_URL = f"postgresql://postgres:{RAW_PASSWORD}@{HOST}"
ENV_URL = f"postgresql://postgres@{HOST}?password={QUERY_PASSWORD}"
REFUSED_URL = f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:1/test"

KNN = {
    "name": f"test-secrets-{TAG}",
    "method": "random",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "run_cap": 1,
    "parameters": {
        "model": {"value": "knn"},
        "train_size": {"value": 1000},
        "val_fraction": {"value": 0.05},
    },
}


def forms(secret: str) -> set[bytes]:
    """The secret as it may travel: raw, percent-encoded, base64 alone and as `api:SECRET`."""
    found = {secret, quote(secret, safe=""), quote(secret)}
    for raw in (secret, f"api:{secret}"):
        encoded = base64.b64encode(raw.encode()).decode()
        found |= {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode()}
    return {f.encode() for f in found}


FORMS = {form: secret for secret in SECRETS for form in forms(secret)}


def leaks(data: bytes) -> list[str]:
    return sorted({FORMS[form] for form in FORMS if form in data})


class Probe:
    """Runs commands in one planted environment and gathers everything they print."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path
        home = tmp_path / "home"
        home.mkdir()
        netrc = home / ".netrc"
        netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {NETRC_KEY}\n")
        netrc.chmod(0o600)
        self.env = clean_env(tmp_path, WANDB_API_KEY=WANDB_KEY, WANDB_MODE="offline")
        self.env.update(HOME=str(home), NETRC=str(netrc), WANDB_DIR=str(tmp_path / "wandb-runs"))
        self.env.pop("KMNIST_SWEEP_STORAGE", None)
        self.printed: list[tuple[list[str], str]] = []  # (command, stdout + stderr)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*CLI, *args],
            env={**self.env, **(env or {})},
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.printed.append((list(args), done.stdout + done.stderr))
        assert "Traceback" not in done.stderr, done.stderr
        return done


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    yield Probe(tmp_path)
    storage = open_storage(POSTGRES_URL)
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(KNN["name"]):
            optuna.delete_study(study_name=summary.study_name, storage=storage)


@pytest.mark.slow
def test_no_secret_in_any_output_file_run_or_study(probe: Probe, kmnist_dir: Path) -> None:
    spec = probe.folder / "knn.yaml"
    spec.write_text(yaml.safe_dump(KNN), encoding="utf-8")
    created = probe.run("create", str(spec), "--backend", "optuna", "--storage", ARGV_URL)
    assert created.returncode == 0, created.stderr
    sweep_id = created.stdout.strip()
    assert "postgres:***@127.0.0.1" in created.stderr  # the agent command it suggests

    argv = ["--storage", ARGV_URL]
    agent = probe.run("agent", sweep_id, *argv, "--wandb", "offline", "--threads", "1")
    assert agent.returncode == 0 and "1 completed" in agent.stderr, agent.stderr
    for command in (
        ["status", sweep_id, *argv],
        ["leaderboard", sweep_id, *argv, "--format", "csv"],
        ["ls", f"--storage={ARGV_URL}"],
        ["report", sweep_id, *argv, "--out", str(probe.folder / "report")],
        ["sync", sweep_id, "--dry-run"],
        ["ls", "--storage", RAW_URL],
    ):
        assert probe.run(*command).returncode == 0, probe.printed[-1]
    from_env = {"KMNIST_SWEEP_STORAGE": ENV_URL}
    assert probe.run("status", sweep_id, env=from_env).returncode == 0, probe.printed[-1]
    for refused in (
        ["agent", "no-such-sweep"],  # names the storage it looked in
        ["ls", "--storage", REFUSED_URL],  # the driver's error, with the URL
        ["launch", sweep_id, "--storage", ARGV_URL],  # no Docker engine here, or no image
        ["launch", sweep_id, "--storage", str(probe.folder / "x.journal")],
    ):
        assert probe.run(*refused, env=from_env).returncode == 2, probe.printed[-1]
    trained = probe.run("train", "--wandb", "--model=knn", "--train_size=500", env=from_env)
    assert trained.returncode == 0, trained.stderr

    for command, text in probe.printed:
        assert leaks(text.encode()) == [], f"{command} printed a secret"
    runs = offline_runs(probe.folder)
    assert len(runs) == 2  # the agent's trial and the train run
    for run in runs:
        (wandb_file,) = run.glob("*.wandb")
        raw = wandb_file.read_bytes()
        if sweep_id in str(run):  # W&B recorded the agent's command line: masked
            assert b"postgres:***@127.0.0.1" in raw
        assert leaks(raw) == [], f"{wandb_file} holds a secret"
        assert leaks(json.dumps(inspect(run)).encode()) == []
    for folder in (probe.folder, kmnist_dir):
        written = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
        assert written
        for path in written:
            if path.name != ".netrc":  # the user's own login, where they put it
                assert leaks(path.read_bytes()) == [], f"{path} holds a secret"
    assert leaks(study_dump(sweep_id).encode()) == []


def study_dump(sweep_id: str) -> str:
    """Everything the study holds in PostgreSQL, as text."""
    storage = open_storage(POSTGRES_URL)
    study = optuna.load_study(study_name=sweep_id, storage=storage)
    trials = [(t.params, t.user_attrs, t.system_attrs, t.intermediate_values) for t in study.trials]
    system = storage.get_study_system_attrs(study._study_id)
    return json.dumps([study.user_attrs, system, trials], default=str)


# -- the one masking function, on every form of URL and argv ---------------------------------
@pytest.mark.parametrize(
    "text,shown",
    [
        (ARGV_URL, f"postgresql://postgres:***@{HOST}"),
        (RAW_URL, f"postgresql://postgres:***@{HOST}"),
        (f"postgresql://postgres:{PASSWORD}@{HOST}", f"postgresql://postgres:***@{HOST}"),
        (ENV_URL, f"postgresql://postgres@{HOST}?password=***"),
        (f"redis://:{QUERY_PASSWORD}@h:6379/0?x=1", "redis://:***@h:6379/0?x=1"),
        (f"mysql://u@h/db?sslmode=x&PWD={QUERY_PASSWORD}", "mysql://u@h/db?sslmode=x&PWD=***"),
        (
            f"cannot open {ARGV_URL}: refused",
            f"cannot open postgresql://postgres:***@{HOST}: refused",
        ),
        (f"host=h password={QUERY_PASSWORD} user=u", "host=h password=*** user=u"),
        (
            f"Authorization: Basic {base64.b64encode(b'api:k' * 9).decode()}",
            "Authorization: Basic ***",
        ),
        ("https://api.wandb.ai/graphql", "https://api.wandb.ai/graphql"),
        ("/var/lib/kmnist/sweeps.journal", "/var/lib/kmnist/sweeps.journal"),
    ],
)
def test_mask_hides_the_password_of_every_url_form(text: str, shown: str) -> None:
    assert mask(text) == shown


def test_mask_hides_known_keys_in_every_form(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine api.wandb.ai login user password {NETRC_KEY}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("KMNIST_SWEEP_STORAGE", ENV_URL)
    for secret in (WANDB_KEY, NETRC_KEY, QUERY_PASSWORD):
        for form in forms(secret):
            said = mask(f"the server said: {form.decode()}!")
            assert said == "the server said: ***!", (secret, form)


def test_agents_started_per_gpu_get_the_storage_through_the_environment() -> None:
    argv = ["agent", "s-1", "--gpus", "0,1", "--storage", ARGV_URL, "--count", "2"]
    commands = spawn.gpu_commands(["cuda:0", "cuda:1"], argv)
    assert [c[-6:] for c in commands] == [
        ["agent", "s-1", "--count", "2", "--device", f"cuda:{i}"] for i in (0, 1)
    ]
    assert spawn.storage_env(ARGV_URL)["KMNIST_SWEEP_STORAGE"] == ARGV_URL


def test_mask_argv_masks_each_word() -> None:
    argv = ["kmnist-sweep", "agent", "s-1", "--storage", ARGV_URL, f"--storage={RAW_URL}"]
    shown = mask_argv(argv)
    assert shown[:4] == argv[:4]
    assert leaks(" ".join(shown).encode()) == []
    assert shown[4] == f"postgresql://postgres:***@{HOST}"
