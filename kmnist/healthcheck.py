"""Container healthcheck: can this agent reach its sweep storage? `python -m kmnist.healthcheck`

Cheap on purpose, as it runs every 30 s in every replica: no optuna or torch import, a TCP
connect to a storage server, or a writable folder for a journal file. Exit 0 when healthy, 1 with
one line saying why when not.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

STORAGE_ENV = "KMNIST_SWEEP_STORAGE"
PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "redis": 6379, "rediss": 6379}


_UNREADABLE = "cannot be read as written: percent-encode @ / ? # in its password"


class Unhealthy(Exception):
    pass


def check(url: str | None, timeout: float = 5.0) -> str:
    """What was checked, or raises Unhealthy."""
    if not url or "://" not in url or url.startswith("file://"):
        return _check_journal(url)
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in PORTS:
        return f"storage {scheme}: not checked"
    host, port = _address(url, scheme)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise Unhealthy(f"storage {scheme}://{shown}:{port} unreachable: {exc}") from None
    return f"storage {scheme}://{shown}:{port} reachable"


# SQLAlchemy's own reading of a URL's authority (make_url): the password ends at the first `@`.
_SQLALCHEMY_ADDRESS = re.compile(
    r"(?:[^:/]*(?::[^@]*)?@)?(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]+))?(?::(?P<port>[^/?]*))?"
)


def _address(url: str, scheme: str) -> tuple[str, int]:
    """(host, port) as the storage's driver reads the URL, or Unhealthy without echoing it: a
    password with a raw `@` (a database) or `/ ? #` (Redis) is cut where the host would begin,
    so what the driver would name as host or port is part of the password."""
    rest = url.split("://", 1)[1]
    if scheme.startswith("redis"):
        return _urllib_address(url, rest, scheme)
    m = _SQLALCHEMY_ADDRESS.match(rest)
    host, port = (m["ipv6"] or m["host"] or "localhost"), m["port"] or str(PORTS[scheme])
    if "@" in host or not port.isdigit():
        raise Unhealthy(f"storage {scheme}:// URL {_UNREADABLE}")
    return host, int(port)


def _urllib_address(url: str, rest: str, scheme: str) -> tuple[str, int]:
    """(host, port) as redis-py reads the URL (urllib: the authority ends at `/`, `?`, `#`)."""
    userinfo = re.split(r"[?#]", rest, maxsplit=1)[0].rpartition("@")[0]
    try:
        parts = urlsplit(url)
        port = parts.port or PORTS[scheme]
    except ValueError:  # its words quote the URL
        raise Unhealthy(f"storage {scheme}:// URL {_UNREADABLE}") from None
    if (parts.password or "") != userinfo.partition(":")[2]:
        raise Unhealthy(f"storage {scheme}:// URL {_UNREADABLE}")
    return parts.hostname or "localhost", port


def _check_journal(url: str | None) -> str:
    if url:
        path = Path(url.removeprefix("file://")).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("kmnist-sweep")) / "sweeps.journal"
    if path.exists() and not path.is_file():  # a folder, fifo or device: the agent refuses it
        raise Unhealthy(f"journal {path} is not a regular file")
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
