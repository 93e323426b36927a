"""Where Optuna studies live: one URL, resolved to an Optuna storage.

- no URL: a journal file under the user's data dir (many agents on one host, no server);
- a path or `file:` URL: a journal file there (`journal.py`: a regular file that holds a
  journal, or a new one `create` makes in a folder that exists; torn records repaired by the
  next writer, full disks handled, every record fsynced);
- `postgresql://...` (or any SQLAlchemy URL, e.g. `mysql://`, `sqlite:///`): Optuna's RDB
  storage, with heartbeats so a trial whose host died is failed and run again; a connection the
  server closed while idle is replaced at its next use, a server that stops answering ends each
  call within seconds (`deadlines`), and a database that fails mid-use is a StorageFault
  (`answering`);
- `redis://...`: the journal on Redis, its calls bounded the same way.

A storage that a driver would read otherwise than written is refused before any driver sees it
(`refuse_misread`): a libpq keyword string, or a password with a raw `@` (SQLAlchemy and libpq
end the password at the first `@` and would echo the rest as the host name).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import optuna
import platformdirs
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import (
    BaseStorage,
    InMemoryStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalRedisBackend
from sqlalchemy.engine import make_url

from kmnist.backends.optuna import deadlines, heartbeats
from kmnist.backends.optuna.journal import NO_SPACE, CheckedJournalStorage, JournalFile
from kmnist.errors import StorageFault, UserError, first_line
from kmnist.masking import mask, mask_word, url_password

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

STORAGE_ENV = "KMNIST_SWEEP_STORAGE"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
MAX_RETRIES = 3
_T = TypeVar("_T")


class RetryTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry record (a WAITING copy, `failed_trial` in its system attrs) that keeps
    the failed trial's config but not its run: a retry must not show the summary, history or
    failure reason of the run it replaces."""

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        fresh = copy.copy(trial)
        fresh.user_attrs = {k: v for k, v in trial.user_attrs.items() if k == "config"}
        super().__call__(study, fresh)


with warnings.catch_warnings():  # "experimental" in Optuna: no warning a user can act on
    warnings.simplefilter("ignore", ExperimentalWarning)
    RETRY = RetryTrial(max_retry=MAX_RETRIES)


def storage_url(url: str | None = None) -> str:
    """The URL in force: `url`, else $KMNIST_SWEEP_STORAGE, else the default journal file."""
    chosen = url or os.environ.get(STORAGE_ENV)
    if chosen:
        return chosen
    return str(Path(platformdirs.user_data_dir("kmnist-sweep")) / "sweeps.journal")


def journal_path(url: str) -> Path | None:
    """The journal file a URL names, or None for a server storage."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("", "file"):
        return Path(url.removeprefix("file://")).expanduser()
    return None


def open_storage(url: str | None = None, create: bool = False) -> BaseStorage:
    """The storage `url` names (else $KMNIST_SWEEP_STORAGE, else the default journal), open.

    Only `create` (a new sweep) may make a journal file, in a folder that exists (the default
    one's folder is made). Every other command reads a journal not made yet as an empty storage
    (no sweep there: one line naming the path), creates nothing, and never writes to a journal
    by opening it.
    """
    chosen = storage_url(url)
    heartbeats.window()  # a bad KMNIST_HEARTBEAT_* is refused by every command, trial or not
    refuse_misread(chosen)
    path = journal_path(chosen)
    try:
        if path is not None:
            return _journal(path, create, default=not (url or os.environ.get(STORAGE_ENV)))
        scheme = chosen.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme == "redis":
            return _redis_journal(chosen)
        if scheme in RDB_SCHEMES:
            return _database(chosen)
    except (
        OSError,
        ImportError,
        ValueError,
        optuna.exceptions.StorageInternalError,
        sqlalchemy.exc.SQLAlchemyError,  # the database is down, refuses us, or is not there
        *REDIS_ERRORS,
    ) as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)  # the driver's own message
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise StorageFault(f"cannot create sweep storage {mask(chosen)}: {reason}") from None
        raise UserError(f"cannot open sweep storage {mask(chosen)}: {reason}") from None
    raise UserError(
        f"unknown storage URL {mask(chosen)}: use a file path, postgresql://... or redis://..."
    )


def _journal(path: Path, create: bool, default: bool) -> BaseStorage:
    if not create and not path.exists() and (default or path.parent.is_dir()):
        return InMemoryStorage()  # no sweep made there yet: nothing to list, nothing written
    if default and create:
        path.parent.mkdir(parents=True, exist_ok=True)  # the user data dir, on first use
    return CheckedJournalStorage(JournalFile(path, create=create))


def _database(url: str) -> RDBStorage:
    """Optuna's RDB storage, each call bounded in time (`deadlines`), with heartbeats."""
    interval, grace = heartbeats.window()
    # Heartbeats are "experimental" in Optuna: a warning per command otherwise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            sqlalchemy_url(url),
            # An agent's connections sit idle through each epoch: one the server closed
            # meanwhile (a restart, pg_terminate_backend, an idle timeout) is found and
            # replaced when next taken from the pool, before any write.
            engine_kwargs={"pool_pre_ping": True, **_bounds(url)},
            heartbeat_interval=interval or HEARTBEAT_SECONDS,
            grace_period=grace or GRACE_SECONDS,
            heartbeat_stale_trial_callback=RETRY,
        )


def _bounds(url: str) -> dict[str, Any]:
    """Connection arguments that bound every call on a PostgreSQL server (`deadlines`)."""
    parsed = make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() != "postgresql":
        return {}
    if parsed.get_driver_name() == "psycopg2":
        deadlines.bound_psycopg2()
    return {"connect_args": deadlines.postgres_connect_args(dict(parsed.query))}


# libpq's connection keywords: a storage "path" made of `keyword=value` words is a libpq
# connection string, which would otherwise become a journal file named after its password.
_LIBPQ_KEYWORD = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode|options|"
    r"connect_timeout|application_name|target_session_attrs)\s*="
)
_RAW_IN_PASSWORD = "@/?#[]"  # where a driver may end a password written raw


def refuse_misread(url: str) -> None:
    """UserError for a storage that would be read otherwise than the user meant: a libpq
    keyword string, or a URL whose password a driver would cut at a raw `@`, `/`, `?`, `#`."""
    if "://" not in url and _LIBPQ_KEYWORD.search(url):
        raise UserError(
            f"sweep storage {mask(url)} is a libpq connection string, which is not supported: "
            "write it as a URL, postgresql://USER@HOST:PORT/DBNAME, with the password in "
            "PGPASSWORD or written as USER:PASSWORD@ (@ : / in it percent-encoded)"
        )
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    written = url_password(url)
    if written is None or scheme in ("", "file", "sqlite"):  # a path may hold `:` and `@`
        return
    if _driver_password(url) == unquote(written):
        return
    raw = " ".join(c for c in _RAW_IN_PASSWORD if c in written) or "character"
    encoded = ", ".join(f"{c} as {quote(c, safe='')}" for c in _RAW_IN_PASSWORD if c in written)
    raise UserError(
        f"sweep storage {mask_word(url)}: its password holds a raw {raw}, where the driver "
        f"would cut it: percent-encode it in the URL ({encoded or 'see RFC 3986'})"
    )


def _driver_password(url: str) -> str | None:
    """The password as the storage's driver will read it: SQLAlchemy for a database (and so
    psycopg2), urllib for redis-py and the rest; None where it cannot read the URL at all."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    try:
        if scheme in RDB_SCHEMES:
            return make_url(sqlalchemy_url(url)).password
        password = urlsplit(url).password
    except (ValueError, sqlalchemy.exc.ArgumentError):
        return None
    return None if password is None else unquote(password)


def _redis_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """redis-py's errors, all of them and those of a server out of reach, where it is
    installed (the `redis://` storage is optional: `pip install redis`)."""
    if importlib.util.find_spec("redis") is None:
        return (), ()
    from redis import exceptions

    return (exceptions.RedisError,), (exceptions.ConnectionError, exceptions.TimeoutError)


REDIS_ERRORS, _REDIS_UNREACHABLE = _redis_errors()


def _redis_journal(url: str) -> JournalStorage:
    """Optuna's journal on Redis, checked to answer now: redis-py connects at its first
    command, so a server that is not there would otherwise fail the first read mid-command."""
    if not REDIS_ERRORS:
        raise UserError(f"sweep storage {mask(url)} needs redis-py: `pip install redis`")
    import redis

    # A silent server: one line, not a hang (the URL's own timeouts win).
    redis.Redis.from_url(url, **deadlines.REDIS_PING).ping()
    bounded = deadlines.bounded_redis_url(url)
    with warnings.catch_warnings():  # "experimental" in Optuna: no warning a user can act on
        warnings.simplefilter("ignore", ExperimentalWarning)
        return JournalStorage(JournalRedisBackend(bounded))


def sqlalchemy_url(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3; a host with only psycopg2 (the
    driver this project installs) would fail with "Failed to import DB access module".
    """
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"  # SQLAlchemy knows no `postgres://`


# What a database storage raises when it stops answering mid-use; Optuna wraps SQLAlchemy's
# errors in StorageInternalError inside its sessions, after rolling the session back.
DATABASE_ERRORS = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.SQLAlchemyError,
    *REDIS_ERRORS,
)
_UNREACHABLE = (
    sqlalchemy.exc.OperationalError,  # refused, gone, the connection cut mid-call
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    *_REDIS_UNREACHABLE,
)


@contextlib.contextmanager
def answering(url: str) -> Iterator[None]:
    """Calls on a storage that opened: one whose database then fails them is a StorageFault
    (one line naming the masked URL, exit code 1), not a traceback.

    The database undoes a transaction it did not commit, so every record it acknowledged is
    kept. (A storage that never opens is a UserError in `open_storage`: exit 2.)
    """
    try:
        yield
    except DATABASE_ERRORS as exc:
        raise StorageFault(database_fault(url, exc)) from None


def again_if_cut(call: Callable[[], _T]) -> _T:
    """`call`, made once more when the server cut its connection under it (a restart, a
    pg_terminate_backend landing mid-call): the pool has dropped that connection and the second
    try connects afresh. Only for calls that may run twice: a read, a write of the same value."""
    try:
        return call()
    except DATABASE_ERRORS as exc:
        if not getattr(_driver_error(exc), "connection_invalidated", False):
            raise
    return call()


def _driver_error(exc: BaseException) -> BaseException:
    """The error under Optuna's StorageInternalError, which wraps SQLAlchemy's."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return exc.__cause__ or exc
    return exc


def database_fault(url: str, exc: BaseException) -> str:
    """One line: which storage failed, the driver's own words, what is kept, what to do."""
    error = _driver_error(exc)
    unreachable = isinstance(error, _UNREACHABLE) or getattr(error, "connection_invalidated", False)
    what = "cannot reach" if unreachable else "a write failed on"
    reason = first_line(getattr(error, "orig", None) or error)
    return (
        f"{what} sweep storage {mask(url)}: {reason}; every record it acknowledged is kept: run "
        "the command again once it answers (an agent's unfinished trial is run again)"
    )
