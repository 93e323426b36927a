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
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    # stable ids (the passwords hold a random tag): pytest-xdist's workers must collect alike
    ids=[
        "argv url",
        "raw url",
        "password with @ / :",
        "environment password",
        "redis",
        "query password",
        "in a message",
        "libpq keywords",
        "basic auth",
        "no secret: url",
        "no secret: path",
    ],
)
def test_mask_hides_the_password_of_every_url_form(text: str, shown: str) -> None:
    assert mask(text) == shown


@pytest.mark.parametrize(
    "text,shown",
    [
        ("token: expected a number", "token: expected a number"),  # a sentence, kept
        ("passwd: see the manual", "passwd: see the manual"),
        ("auth: failed, password: hunter2", "auth: failed, password: ***"),
        ("token: abc", "token: ***"),  # a word that ends the line: a value
        ("password: hunter2 is wrong", "password: *** is wrong"),  # not a plain word
        ("password: Secret is wrong", "password: *** is wrong"),
        ('{"token": "abc def"}', '{"token": "*** def"}'),  # quoted: a value
        ("api_key=expected a number", "api_key=*** a number"),  # after `=`: always a value
        # a file and its line, not a label: `validate /etc/passwd` names it so
        ("/etc/passwd:1: expected a mapping", "/etc/passwd:1: expected a mapping"),
        ("conf/db.pass:3: bad", "conf/db.pass:3: bad"),
    ],
)
def test_mask_tells_a_sentence_from_a_secret(text: str, shown: str) -> None:
    assert mask(text) == shown


def test_what_a_driver_echoes_of_a_misread_password_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libpq ends the password at the first `@` and names the rest as the host it cannot find.
    monkeypatch.setenv("KMNIST_SWEEP_STORAGE", "postgresql://u:TOPX@SECRETPART@127.0.0.1/db")
    echoed = 'could not translate host name "SECRETPART@127.0.0.1" to address'
    assert mask(echoed) == 'could not translate host name "***@127.0.0.1" to address'
    # redis-py (urllib) ends the authority at a raw `/`: it reads `b` as the port.
    monkeypatch.setenv("KMNIST_SWEEP_STORAGE", "redis://:a1b2/PORTPART@127.0.0.1/0")
    assert "PORTPART" not in mask("invalid literal for int() with base 10: 'PORTPART@127.0.0.1'")
    # A word on the command line is one URL to its end, a space in its password included.
    assert mask_argv(["--storage=postgresql://u:Sp4ce Secret@h/db"]) == [
        "--storage=postgresql://u:***@h/db"
    ]


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


# -- every storage kind x every password form x every place a storage URL is echoed ----------
TABLE_TAG = uuid.uuid4().hex[:12]  # in both halves of every password: it must never show
TABLE_SWEEP = {**KNN, "name": f"secrets-table-{uuid.uuid4().hex[:6]}"}
REDIS_USER = f"kmnist-{uuid.uuid4().hex[:6]}"  # an ACL user that takes any password, as trust


def pw(raw: str = "") -> str:
    """A password with `raw` in its middle."""
    return f"a{TABLE_TAG}{raw}b{TABLE_TAG}"


@dataclass(frozen=True)
class Row:
    kind: str
    form: str
    storage: str  # {addr}: 127.0.0.1:PORT; {port}: PORT (the server's, or a closed one)
    expect: str  # "created"; "refused: <words>"; "either" (the host decides: IPv6, Redis auth)
    env: tuple[tuple[str, str], ...] = ()


PG = "postgresql://postgres"
RD = f"redis://{REDIS_USER}"
ROWS = [
    Row("journal", "path, passwords in the environment", "{folder}/sweeps.journal", "created",
        (("PGPASSWORD", pw()), ("REDISCLI_AUTH", pw("-")))),
    Row("journal", "libpq keyword string", f"host=127.0.0.1 password={pw()} dbname=test",
        "refused: libpq connection string"),
    Row("journal", "libpq keyword string, quoted", f"host=127.0.0.1 password='{pw(' ')}'",
        "refused: libpq connection string"),
    Row("postgresql", "plain", f"{PG}:{pw()}@{{addr}}/test", "created"),
    Row("postgresql", "a space", f"{PG}:{pw(' ')}@{{addr}}/test", "created"),
    Row("postgresql", "a raw :", f"{PG}:{pw(':')}@{{addr}}/test", "created"),
    Row("postgresql", "a raw /", f"{PG}:{pw('/')}@{{addr}}/test", "created"),
    Row("postgresql", "a raw @", f"{PG}:{pw('@')}@{{addr}}/test", "refused: percent-encode"),
    Row("postgresql", "percent-encoded", f"{PG}:{quote(pw('@: /'), safe='')}@{{addr}}/test",
        "created"),
    Row("postgresql", "query string", f"{PG}@{{addr}}/test?password={pw()}", "created"),
    Row("postgresql", "PGPASSWORD", f"{PG}@{{addr}}/test", "created", (("PGPASSWORD", pw()),)),
    Row("postgresql", "IPv6 host", f"{PG}:{pw()}@[::1]:{{port}}/test", "either"),
    Row("redis", "no user", f"redis://:{pw()}@{{addr}}/12", "either"),
    Row("redis", "plain", f"{RD}:{pw()}@{{addr}}/12", "created"),
    Row("redis", "a space", f"{RD}:{pw(' ')}@{{addr}}/12", "created"),
    Row("redis", "a raw :", f"{RD}:{pw(':')}@{{addr}}/12", "created"),
    Row("redis", "a raw @", f"{RD}:{pw('@')}@{{addr}}/12", "created"),
    Row("redis", "a raw /", f"{RD}:{pw('/')}@{{addr}}/12", "refused: percent-encode"),
    Row("redis", "percent-encoded", f"{RD}:{quote(pw('@: /'), safe='')}@{{addr}}/12", "created"),
    Row("redis", "query string", f"{RD}@{{addr}}/12?password={pw()}", "created"),
    Row("redis", "IPv6 host", f"{RD}:{pw()}@[::1]:{{port}}/12", "either"),
]  # fmt: skip
PORTS = {"journal": 0, "postgresql": 5432, "redis": 6379}


def storage_of(row: Row, folder: Path, up: bool) -> str:
    """The row's storage, reachable or not (a closed port; a journal in a missing folder)."""
    port = PORTS[row.kind] if up else 1
    where = folder if up else folder / "missing"
    return row.storage.format(addr=f"127.0.0.1:{port}", port=port, folder=where)


def assert_nothing_shown(proc: subprocess.CompletedProcess[str]) -> None:
    text = proc.stdout + proc.stderr
    assert TABLE_TAG not in text and "Traceback" not in text, text
    assert [p for s in (pw(), pw(" ")) for p in forms(s) if p in text.encode()] == []


def assert_one_masked_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), proc.stderr
    assert_nothing_shown(proc)


@pytest.fixture(scope="module")
def table_servers() -> Iterator[None]:
    """A Redis user that takes any password (as PostgreSQL's trust auth here), and nothing of
    the table's sweeps left behind."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/12")
    client.flushdb()
    client.execute_command("ACL", "SETUSER", REDIS_USER, "on", "nopass", "~*", "&*", "+@all")
    yield
    client.execute_command("ACL", "DELUSER", REDIS_USER)
    client.flushdb()
    storage = open_storage(POSTGRES_URL)
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(TABLE_SWEEP["name"]):
            optuna.delete_study(study_name=summary.study_name, storage=storage)


@pytest.mark.e2e  # the CLI once per row and command
@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.kind}: {row.form}")
def test_no_storage_password_shows_where_a_storage_is_echoed(
    row: Row, tmp_path: Path, table_servers: None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KMNIST_SWEEP_STORAGE"} | dict(row.env)
    up, down = storage_of(row, tmp_path, up=True), storage_of(row, tmp_path, up=False)
    spec = tmp_path / "knn.yaml"
    spec.write_text(yaml.safe_dump(TABLE_SWEEP), encoding="utf-8")

    def run(*args: str, storage: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"KMNIST_SWEEP_STORAGE": storage} if storage else {}
        return subprocess.run(
            [*CLI, *args], env=env | extra, capture_output=True, text=True, timeout=60, check=False
        )

    # create's hint line (or its one refusal), the storage given on the command line
    created = run("create", str(spec), "--backend", "optuna", "--storage", up)
    assert_nothing_shown(created)
    if row.expect.startswith("refused"):
        assert_one_masked_line(created, row.expect.split(": ", 1)[1])
    elif created.returncode == 0 or row.expect == "created":
        assert created.returncode == 0, created.stderr
        (hint,) = [line for line in created.stderr.splitlines() if "start agents with" in line]
        assert ("***" in hint) == (TABLE_TAG in up), hint  # masked where it was written
    else:
        assert_one_masked_line(created, "sweep storage")
    # ls's error from a server that is not there, the storage on the command line ...
    assert_one_masked_line(run("ls", f"--storage={down}"), "sweep storage")
    # ... and status's, the storage in $KMNIST_SWEEP_STORAGE
    assert_one_masked_line(run("status", "s-1", storage=down), "sweep storage")
    # the argv a W&B run records (`wandb sync` uploads it): the CLI masks its own once parsed
    recorded = subprocess.run(
        [
            *CLI[:1],
            "-c",
            "import json, sys; from kmnist.cli.app import hide_secrets; "
            "hide_secrets(sys.argv[1:]); print(json.dumps(sys.argv))",
            "--storage",
            up,
            f"--storage={down}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert_nothing_shown(recorded)
    assert len(json.loads(recorded.stdout)) == 4
