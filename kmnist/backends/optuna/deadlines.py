"""Bounds on a storage server that stops answering: each call ends within seconds, never hangs.

A server (or the link to it) can accept a connection and then say nothing: libpq would wait for
ever, in `ls` as in an agent mid-trial. So:

- PostgreSQL through psycopg2: psycopg2 waits through a callback (its "green" mode) that gives
  up when nothing has come for CONNECT_SECONDS while connecting, or NO_ANSWER_SECONDS once
  connected; psycopg2 then closes the connection and raises OperationalError, which the storage
  reports as one line (`storage.open_storage`, `storage.answering`). The server itself ends a
  statement running (or waiting on a lock) past STATEMENT_SECONDS first, so a slow statement
  gets the server's own error, not ours. TCP keepalives and tcp_user_timeout find a dead link
  under an idle pooled connection. A value the URL's query sets (`?connect_timeout=3`) wins.
- Redis: socket_connect_timeout and socket_timeout in the URL redis-py reads, unless set there.

Worst cases: a server that never answers is one line after CONNECT_SECONDS at a command's
start; mid-use, after NO_ANSWER_SECONDS plus CONNECT_SECONDS (the pool tries one new
connection after a dead one).
"""

from __future__ import annotations

import importlib.util
import select
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CONNECT_SECONDS = 5
STATEMENT_SECONDS = 8
NO_ANSWER_SECONDS = 10
# An idle link found dead after 5 s + 3 probes 2 s apart.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


def postgres_connect_args(query: dict[str, Any]) -> dict[str, Any]:
    """libpq's connection parameters that bound each call, less those the URL's `query` sets."""
    args: dict[str, Any] = {"connect_timeout": CONNECT_SECONDS, **KEEPALIVES}
    if _libpq_version() >= 120000:  # tcp_user_timeout is unknown to older libpq
        args["tcp_user_timeout"] = NO_ANSWER_SECONDS * 1000
    args = {key: value for key, value in args.items() if key not in query}
    # Theirs after ours: a statement_timeout the URL's own `options` set wins.
    options = f"-c statement_timeout={STATEMENT_SECONDS * 1000}"
    args["options"] = f"{options} {query['options']}" if "options" in query else options
    return args


def bound_psycopg2() -> None:
    """Every psycopg2 wait in this process ends after its bound (the callback is global)."""
    import psycopg2.extensions

    if psycopg2.extensions.get_wait_callback() is not _wait:
        psycopg2.extensions.set_wait_callback(_wait)


def _wait(conn: Any) -> None:
    """psycopg2's wait loop (extras.wait_select), with a bound on each silence."""
    import psycopg2
    from psycopg2 import extensions

    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        events = {extensions.POLL_READ: select.POLLIN, extensions.POLL_WRITE: select.POLLOUT}
        if state not in events:
            raise psycopg2.OperationalError(f"unexpected state from the connection: {state}")
        connecting = conn.status not in _CONNECTED
        limit = CONNECT_SECONDS if connecting else NO_ANSWER_SECONDS
        poller = select.poll()
        poller.register(conn.fileno(), events[state])
        if not poller.poll(limit * 1000):
            doing = "connecting" if connecting else "waiting for an answer"
            raise psycopg2.OperationalError(
                f"the server sent nothing for {limit} s while {doing} (stalled or unreachable)"
            )


def _connected_states() -> frozenset[int]:
    if importlib.util.find_spec("psycopg2") is None:
        return frozenset()
    from psycopg2 import extensions

    return frozenset({extensions.STATUS_READY, extensions.STATUS_BEGIN, extensions.STATUS_PREPARED})


_CONNECTED = _connected_states()


def _libpq_version() -> int:
    try:
        import psycopg2
    except ImportError:
        return 0
    return int(psycopg2.__libpq_version__)


# The ping that checks a Redis server answers at a command's start (a URL's own values win).
REDIS_PING = {"socket_connect_timeout": CONNECT_SECONDS, "socket_timeout": CONNECT_SECONDS}


def bounded_redis_url(url: str) -> str:
    """`url` with redis-py's socket timeouts, unless the URL sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("socket_connect_timeout", str(CONNECT_SECONDS))
    query.setdefault("socket_timeout", str(NO_ANSWER_SECONDS))
    return urlunsplit(parts._replace(query=urlencode(query)))
