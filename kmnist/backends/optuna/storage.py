"""Where Optuna studies live: one URL, resolved to an Optuna storage.

- no URL: a journal file under the user's data dir (many agents on one host, no server);
- a path or `file:` URL: a journal file there (`journal.py`: torn records repaired, full disks
  handled, every record fsynced);
- `postgresql://...` (or any SQLAlchemy URL, e.g. `mysql://`, `sqlite:///`): Optuna's RDB
  storage, with heartbeats so a trial whose host died is failed and run again; a connection the
  server closed while idle is replaced at its next use, and a database that stops answering
  mid-use is a StorageFault (`answering`);
- `redis://...`: the journal on Redis.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import platformdirs
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalRedisBackend

from kmnist.backends.optuna.journal import NO_SPACE, CheckedJournalStorage, JournalFile
from kmnist.errors import StorageFault, UserError, first_line
from kmnist.masking import mask

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

STORAGE_ENV = "KMNIST_SWEEP_STORAGE"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
MAX_RETRIES = 3


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


def open_storage(url: str | None = None) -> BaseStorage:
    url = storage_url(url)
    path = journal_path(url)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            return CheckedJournalStorage(JournalFile(path))
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if scheme == "redis":
            return _redis_journal(url)
        if scheme in RDB_SCHEMES:
            # Heartbeats are "experimental" in Optuna: a warning per command otherwise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    sqlalchemy_url(url),
                    # An agent's connections sit idle through each epoch: one the server
                    # closed meanwhile (a restart, pg_terminate_backend, an idle timeout) is
                    # found and replaced when next taken from the pool, before any write.
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=RETRY,
                )
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
            raise StorageFault(f"cannot create sweep storage {mask(url)}: {reason}") from None
        raise UserError(f"cannot open sweep storage {mask(url)}: {reason}") from None
    raise UserError(
        f"unknown storage URL {mask(url)}: use a file path, postgresql://... or redis://..."
    )


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

    redis.Redis.from_url(url).ping()
    with warnings.catch_warnings():  # "experimental" in Optuna: no warning a user can act on
        warnings.simplefilter("ignore", ExperimentalWarning)
        return JournalStorage(JournalRedisBackend(url))


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


def database_fault(url: str, exc: BaseException) -> str:
    """One line: which storage failed, the driver's own words, what is kept, what to do."""
    error = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    error = error or exc
    unreachable = isinstance(error, _UNREACHABLE) or getattr(error, "connection_invalidated", False)
    what = "cannot reach" if unreachable else "a write failed on"
    reason = first_line(getattr(error, "orig", None) or error)
    return (
        f"{what} sweep storage {mask(url)}: {reason}; every record it acknowledged is kept: run "
        "the command again once it answers (an agent's unfinished trial is run again)"
    )
