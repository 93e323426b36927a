"""Helpers for the W&B tests: offline runs read back, and local stand-ins for W&B's server.

W&B's cloud cannot be reached from here. What runs for real: offline runs (written by wandb,
read back with `wandb leet inspect`), and W&B's client talking to small HTTP servers on
127.0.0.1 that answer as a server that is there (401 to every request), hangs, or never accepts.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import wandb
import yaml
from wandb.agents.pyagent import _terminate_thread
from wandb.sdk.lib.config_util import save_config_file_from_dict

CLI = [sys.executable, "-m", "kmnist.cli"]  # `kmnist-sweep`, without the pyenv shim
FAKE_KEY = "kmnisttestkey" + "0123456789abcdef" * 2 + "zz"  # 47 characters, a key's shape


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment with no W&B login: HOME is empty (no netrc), no key, runs in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NETRC"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> Any:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


# -- reading offline runs back -----------------------------------------------------------------
def inspect(run_dir: Path) -> dict[str, Any]:
    """`wandb leet inspect --summary --json`: state, config, summary, tags, project."""
    out = _leet(run_dir, "--summary", "--json")
    return json.loads(out)


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of the run's `.wandb` file, in order."""
    return [json.loads(line) for line in _leet(run_dir, "--json").splitlines() if line.strip()]


def run_record(run_dir: Path) -> dict[str, Any]:
    return next(r["run"] for r in records(run_dir) if r["type"] == "run")


def history(run_dir: Path) -> list[dict[str, Any]]:
    return [r["history"]["item"] for r in records(run_dir) if r["type"] == "history"]


def _leet(run_dir: Path, *flags: str) -> str:
    # cwd is the run's folder: `wandb` writes a debug log into ./wandb wherever it runs.
    done = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", *flags, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=run_dir,
    )
    return done.stdout


def offline_runs(folder: Path) -> list[Path]:
    return sorted(folder.glob("**/offline-run-*"))


# -- local servers -----------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every request with `status`, echoing the request's headers in the body, as a
    careless proxy or server error page might; or, with `hang`, never answers a POST."""

    status = 401
    hang: threading.Event | None = None

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.hang is not None:
            self.hang.wait(60)
            return
        body = f"denied; you sent {dict(self.headers)}".encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(status: int = 401, hang: bool = False) -> Iterator[str]:
    released = threading.Event()
    handler = type("Handler", (_Handler,), {"status": status, "hang": released if hang else None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        released.set()
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never says a word (a firewall that drops)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port() -> str:
    """A URL on a port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- W&B's agent loop, standing in for its server's side ------------------------------------
# A W&B agent, as `wandb.agents.pyagent` runs a function: per run it writes the param file and
# sets WANDB_RUN_ID / WANDB_SWEEP_ID / WANDB_SWEEP_PARAM_PATH, calls the function in a thread,
# stops a run by raising an exception into that thread (`_terminate_thread`, W&B's own),
# finishes W&B's run after the function and unsets the variables; with no run left it waits for
# one (`idle`, "Sweep Agent: Waiting for job") and, on KeyboardInterrupt in its own thread (its
# Ctrl-C path), stops its runs that way and returns.
class FakeAgent:
    def __init__(self, runs: list[dict[str, Any]], action: str = "", idle: bool = False) -> None:
        self.runs, self.action, self.idle = runs, action, idle
        self.calls: list[dict[str, Any]] = []
        self.started: list[str] = []  # the runs whose function was called
        self.returned = False
        self.thread: threading.Thread | None = None

    def __call__(self, sweep_id: str, function: Callable[[], None], **kw: Any) -> None:
        self.calls.append({"sweep_id": sweep_id, "function": function, **kw})
        os.environ["WANDB_MODE"] = "offline"  # no server here: the runs are written offline
        try:
            for number, params in enumerate(self.runs):
                self._run(f"{sweep_id}r{number}", sweep_id, params, function)
            while self.idle:
                time.sleep(0.02)
        except KeyboardInterrupt:
            if self.thread is not None:
                _terminate_thread(self.thread)
                self._wait(self.thread)
        self.returned = True

    def _run(self, run_id: str, sweep_id: str, params: dict[str, Any], function: Callable) -> None:
        path = Path(os.environ["WANDB_DIR"]) / "wandb" / f"sweep-{sweep_id}" / f"{run_id}.yaml"
        save_config_file_from_dict(str(path), {k: {"value": v} for k, v in params.items()})
        os.environ.update(
            WANDB_RUN_ID=run_id, WANDB_SWEEP_ID=sweep_id, WANDB_SWEEP_PARAM_PATH=str(path)
        )
        wandb.teardown()  # as pyagent: each run gets a fresh W&B setup
        self.started.append(run_id)
        self.thread = threading.Thread(target=self._job, args=(function,))
        self.thread.start()
        self._wait(self.thread, act=True)

    @staticmethod
    def _job(function: Callable[[], None]) -> None:
        try:
            function()
            wandb.finish()
        except Exception:
            wandb.finish(exit_code=1)
        finally:
            for name in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH"):
                os.environ.pop(name, None)

    def _wait(self, thread: threading.Thread, act: bool = False) -> None:
        acted = not act
        while thread.is_alive():  # as pyagent: a wait a signal can interrupt, not join()
            if self.action and not acted and wandb.run is not None and wandb.run.step >= 1:
                acted = True  # the run has logged an epoch
                if self.action == "stop":
                    _terminate_thread(thread)
                else:
                    os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.02)


# -- the sweep schema ---------------------------------------------------------------------
# Every parameter form of W&B's schema, and the shorthands W&B infers a form from.
SCHEMA_FORMS: list[dict[str, Any]] = [
    {"value": 3},
    {"value": "adam", "distribution": "constant"},
    {"values": [1, 2, 3]},
    {"values": ["a", "b"], "distribution": "categorical"},
    {"values": [0.1, 0.2], "probabilities": [0.5, 0.5]},
    {"min": 1, "max": 9},
    {"min": 0.5, "max": 9},
    {"min": 1, "max": 9.0},
    {"distribution": "int_uniform", "min": -3, "max": 3},
    {"distribution": "uniform", "min": 0.0, "max": 1.0},
    {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1},
    {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
    {"distribution": "q_uniform", "min": 0, "max": 10},
    {"distribution": "q_log_uniform_values", "min": 1, "max": 256},
    {"distribution": "q_log_uniform_values", "min": 1, "max": 256, "q": 4},
    {"distribution": "q_log_uniform_values", "min": 0.5, "max": 256},
    *({"distribution": d, "min": 0, "max": 1} for d in ("log_uniform", "inv_log_uniform")),
    {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1.0},
    *({"distribution": d, "mu": 0, "sigma": 1} for d in ("normal", "log_normal")),
    *({"distribution": d, "mu": 0, "sigma": 1, "q": 1} for d in ("q_normal", "q_log_normal")),
    {"distribution": "beta", "a": 2, "b": 3},
    {"distribution": "q_beta", "a": 2, "b": 3, "q": 0.1},
    {"distribution": "q_log_uniform", "min": 0, "max": 3, "q": 1},
    {"parameters": {"k": {"value": 1}}},
]


def sweep_file_parameters() -> list[dict[str, Any]]:
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml")):
        found += yaml.safe_load(path.read_text(encoding="utf-8"))["parameters"].values()
    return found
