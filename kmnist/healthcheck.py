"""Container healthcheck: can this agent reach its sweep storage? `python -m kmnist.healthcheck`

Cheap on purpose, as it runs every 30 s in every replica: no optuna or torch import, a TCP
connect to a storage server, or a writable folder for a journal file. Exit 0 when healthy, 1 with
one line saying why when not.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

STORAGE_ENV = "KMNIST_SWEEP_STORAGE"
PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "redis": 6379, "rediss": 6379}


class Unhealthy(Exception):
    pass


def check(url: str | None, timeout: float = 5.0) -> str:
    """What was checked, or raises Unhealthy."""
    if not url or "://" not in url or url.startswith("file://"):
        return _check_journal(url)
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in PORTS:
        return f"storage {scheme}: not checked"
    host, port = parts.hostname or "localhost", parts.port or PORTS[scheme]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise Unhealthy(f"storage {scheme}://{host}:{port} unreachable: {exc}") from None
    return f"storage {scheme}://{host}:{port} reachable"


def _check_journal(url: str | None) -> str:
    if url:
        path = Path(url.removeprefix("file://")).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("kmnist-sweep")) / "sweeps.journal"
    folder = next((p for p in path.parents if p.exists()), Path("/"))
    if not os.access(folder, os.W_OK):
        raise Unhealthy(f"journal {path}: folder {folder} is not writable")
    return f"journal {path} writable"


def main() -> int:
    try:
        print(check(os.environ.get(STORAGE_ENV)))
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
