"""The journal file: Optuna's JournalFileBackend, safe against torn writes and full disks.

Optuna's journal is one JSON record per line, appended under a lock file. A write cut short (a
full disk, a quota, power loss, a crash between two `write` calls) leaves a last line with no
line end; Optuna then glues the next record onto it, and from then on every reader fails with a
decode error. Here:

- a file is taken for a journal only from its content, before anything is written: empty, or a
  first line that is one of Optuna's records (or, with no line end yet, the start of one).
  Anything else (notes, a config, binary data) is a UserError naming it, left byte for byte; a
  folder, fifo, device or socket is refused before it is opened for reading, and a missing file
  is made only by `create`, in a folder that exists;
- an append takes the journal's lock, drops a torn last line it finds there (under the lock
  only a writer that died can have left one), writes its record, fsyncs it, and, if the write
  fails, truncates the file back to where it was: a failed write leaves nothing behind; it says
  on stderr what it repaired;
- opening never writes: a command that only reads (`ls`, `status`, `leaderboard`...) reads
  around a torn last line and says so in one line (unless a writer holds the lock: a record
  being appended is not torn);
- a line in the journal that is not one of Optuna's records is a UserError naming the line:
  nothing is rewritten, and the records before it are shown to be intact;
- a journal that cannot be read or written is a UserError (exit 2: set up wrong) until it has
  been read or written; once it has, it failing so is a StorageFault (exit 1): it was moved,
  deleted or had its permissions changed while in use, and nothing is written in its place.

Durability: each record is fsynced before its append returns, so a power loss can lose only
the record being written, never one that was acknowledged (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import stat
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._storage import JournalOperation

from kmnist.errors import StorageFault, UserError, first_line

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
OP_CODES = frozenset(op.value for op in JournalOperation)
# When records are fsynced: "append", each one (the default: a power loss costs at most the
# record being written); "trial", only those that create a study or set a trial's state;
# "off", never. The other two are measured in bench/journal_sync.py, not offered to users.
SYNC = "append"
_TRIAL_ENDS = frozenset({JournalOperation.CREATE_STUDY, JournalOperation.SET_TRIAL_STATE_VALUES})
_CHUNK = 1 << 16


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class CorruptJournal(UserError):
    def __init__(self, path: Path, line: int, why: str) -> None:
        kept = (
            f"the {line - 1} records before it are intact: keep them with "
            f"`head -n {line - 1} {path} > {path}.kept` and use that file, or restore a backup"
            if line > 1
            else "restore a backup, or move the file away to start a new storage"
        )
        super().__init__(f"sweep storage {path}: line {line} is {why}; {kept}")


class JournalFile(JournalFileBackend):
    """A journal file that repairs a torn last record and never leaves a partial one."""

    def __init__(
        self, path: Path, create: bool = False, say: Callable[[str], None] = _stderr
    ) -> None:
        self.path, self._say, self._sync = path, say, SYNC
        self._worked: set[str] = set()  # "read", "write": what this process has done here
        created = self._check(create)
        try:
            # Creates the file when missing; O_EXCL lock files work on any filesystem.
            super().__init__(str(path), lock_obj=FairLock(str(path)))
            if created:
                _fsync_folder(path.parent)  # the new file's name is durable too
        except OSError as exc:
            raise self._fault(exc, "create") from None
        if not created:
            self._note_torn_tail()

    def _check(self, create: bool) -> bool:
        """True if the journal is to be made; UserError unless the path is a journal file or,
        for `create`, a new one in a folder that exists. Reads only, and never blocks."""
        path, folder = self.path, self.path.parent
        if not folder.is_dir():
            why = "is not a folder" if folder.exists() else "does not exist"
            raise UserError(
                f"cannot open sweep storage {path}: {folder} {why}; give a journal path in an "
                "existing folder"
            )
        try:
            kind = _kind(os.stat(path).st_mode)
        except FileNotFoundError:
            if create:
                return True
            raise UserError(
                f"no sweep storage at {path} (no such file): check the path; "
                f"`kmnist-sweep create SWEEP.yaml --storage {path}` starts a new one"
            ) from None
        except OSError as exc:
            raise self._fault(exc, "read") from None
        if kind == "folder":
            raise UserError(
                f"sweep storage {path} is a folder: give a journal file, "
                f"such as {path / 'sweeps.journal'}"
            )
        if kind != "file":
            raise UserError(
                f"sweep storage {path} is a {kind}, not a file: give the path of a journal file "
                "(or a new path, for `create`)"
            )
        self._refuse_what_is_not_a_journal()
        return False

    def _refuse_what_is_not_a_journal(self) -> None:
        try:
            head, whole = _head(self.path)
        except OSError as exc:
            raise self._fault(exc, "read") from None
        why = _not_a_journal(head, whole)
        if why:
            raise UserError(
                f"sweep storage {self.path} is not a sweep journal (line 1 is {why}); it was left "
                "as it is: give a journal file's path, a new path to start one, or restore a "
                "backup"
            )

    # -- reading -----------------------------------------------------------------------------
    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's reader (offsets cached per line), with a named line for a bad record.

        A last line with no line end is a record still being written, or a torn one that the
        next writer drops: it is not read now.
        """
        try:
            f = open(self._file_path, "rb")  # noqa: SIM115 - closed below, in the generator
        except OSError as exc:
            raise self._fault(exc, "read") from None
        self._worked.add("read")
        with f:
            # Only what the file held when we started: another process may be appending.
            remaining = os.fstat(f.fileno()).st_size
            start = 0
            if log_number_from in self._log_number_offset:
                f.seek(self._log_number_offset[log_number_from])
                start = log_number_from
                remaining -= self._log_number_offset[log_number_from]
            for number, line in enumerate(f, start=start):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    return
                self._log_number_offset.setdefault(
                    number + 1, self._log_number_offset[number] + len(line)
                )
                if number >= log_number_from:
                    yield self._record(line, number + 1)

    def _record(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as exc:  # not JSON, or not UTF-8
            raise CorruptJournal(
                self.path, number, f"not a JSON record ({first_line(exc)})"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("worker_id"), str):
            raise CorruptJournal(self.path, number, "not an Optuna journal record")
        if record.get("op_code") not in OP_CODES:
            why = f"a record of unknown kind (op_code {record.get('op_code')!r})"
            raise CorruptJournal(self.path, number, why)
        return record

    # -- writing -----------------------------------------------------------------------------
    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with self._locked(), self._opened() as fd:
            end = self._repair(fd)
            try:
                _write_all(fd, data.encode("utf-8"))
                if self._must_sync(logs):
                    os.fsync(fd)
            except BaseException as exc:  # a full disk, or a signal between two writes
                with suppress(OSError):
                    os.ftruncate(fd, end)  # no partial record stays behind
                if isinstance(exc, OSError):
                    raise self._fault(exc, "write") from None
                raise
        self._worked.add("write")

    def _must_sync(self, logs: list[dict[str, Any]]) -> bool:
        if self._sync == "trial":
            return any(log.get("op_code") in _TRIAL_ENDS for log in logs)
        return self._sync == "append"

    # -- torn last records -------------------------------------------------------------------
    def _note_torn_tail(self) -> None:
        """One line if the journal ends in a torn record, which readers skip and the next
        writer drops (or ends, if only its line end was lost). Nothing is written here."""
        if os.path.exists(f"{self.path}.lock"):  # a writer may be appending right now
            return
        try:
            tail = _torn_tail(self.path)
        except OSError as exc:
            raise self._fault(exc, "read") from None
        if tail is None:
            return
        what = (
            "a last record that lost its line end: it is not read until the first write to "
            "the journal ends it"
            if _is_record(tail)
            else f"a torn record ({len(tail)} bytes, left by an interrupted write): it is "
            "ignored, and the first write to the journal drops it"
        )
        self._say(f"note: sweep storage {self.path} ends in {what}")

    def _repair(self, fd: int) -> int:
        """Drop the torn last line, or end a whole last record; the size after. Under lock."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        start = _last_line_start(fd, size)
        tail = os.pread(fd, size - start, start)
        if _is_record(tail):  # only its line end was lost
            _write_all(fd, b"\n")
            end, what = size + 1, "ended its last record, which had lost its line end"
        else:
            os.ftruncate(fd, start)
            end = start
            what = (
                f"dropped its torn last record ({size - start} bytes, left by an interrupted "
                "write); every record before it is intact"
            )
        os.fsync(fd)
        self._say(f"note: repaired sweep storage {self.path}: {what}")
        return end

    # -- locks, files and errors -------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._lock.acquire()
        except OSError as exc:
            raise self._fault(exc, "lock") from None
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _opened(self) -> Iterator[int]:
        try:
            fd = os.open(self._file_path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise self._fault(exc, "write") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _fault(self, exc: OSError, doing: str) -> Exception:
        """An OSError as the one-line error a user sees: StorageFault (exit 1) or UserError."""
        reason = exc.strerror or first_line(exc)
        target = f"{self.path}.lock" if doing == "lock" else self.path
        if exc.errno in NO_SPACE:
            return StorageFault(
                f"cannot write sweep storage {self.path}: {reason}; every record before this "
                "write is intact: free space and run the command again (an agent's unfinished "
                "trial is run again)"
            )
        if ("read" if doing == "read" else "write") in self._worked:
            return StorageFault(
                f"lost sweep storage {target} while in use: cannot {doing} it ({reason}); it was "
                "moved, deleted or had its permissions changed, and nothing was written in its "
                "place: put it back as it was and run the command again (an agent's unfinished "
                "trial is run again)"
            )
        if exc.errno in NOT_WRITABLE:
            return UserError(
                f"cannot {doing} sweep storage {target}: {reason}; make it and its folder "
                "writable, or give --storage a journal path you can write"
            )
        if doing in ("read", "create"):
            return UserError(f"cannot {doing} sweep storage {target}: {reason}")
        return StorageFault(
            f"cannot write sweep storage {self.path}: {reason}; every record before this "
            "write is intact"
        )


class FairLock(JournalFileOpenLock):
    """Optuna's O_EXCL lock file, polled every millisecond or two instead of backing off.

    The protocol is Optuna's (the same `.lock` file, created with O_EXCL, released by rename
    and unlink), so plain Optuna processes on the journal still exclude us and we them. Optuna
    doubles its wait up to a second between tries; with an fsync per record held under the
    lock (4 ms on a virtual disk), 8 agents then starve some of their number for tens of
    seconds (measured: one of 8 got no trial of 400). Short random waits share it out.
    """

    def acquire(self) -> bool:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        seen, since = None, time.monotonic()
        while True:
            try:
                os.close(os.open(self._lock_file, flags))
                return True
            except FileExistsError:
                pass
            try:
                mtime = os.stat(self._lock_file).st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            if mtime != seen:
                seen, since = mtime, time.monotonic()
            elif self.grace_period and time.monotonic() - since > self.grace_period:
                # Left by a writer that died holding it (Optuna does the same after 30 s).
                with suppress(RuntimeError):
                    self.release()
                _stderr(f"note: took over {self._lock_file}, left by a writer that died")
                continue
            time.sleep(random.uniform(0.0005, 0.002))


class CheckedJournalStorage(JournalStorage):
    """JournalStorage that names the line of a record it cannot replay.

    Optuna replays every record into memory; one another process wrote that does not fit
    (a field missing or of the wrong type) would raise KeyError or ValueError from deep inside.
    Records this process wrote keep Optuna's own errors: they are how it answers this worker
    (a study name taken, a trial already finished).
    """

    def _sync_with_backend(self) -> None:  # Optuna 5.0's, one record at a time
        replay = self._replay_result
        backend = self._backend
        for record in backend.read_logs(replay.log_number_read):
            try:
                replay.apply_logs([record])
            except Exception as exc:
                mine = str(record.get("worker_id", "")).startswith(self._worker_id_prefix)
                if mine or not isinstance(backend, JournalFile):
                    raise
                why = f"a record that cannot be replayed ({type(exc).__name__}: {first_line(exc)})"
                raise CorruptJournal(backend.path, replay.log_number_read, why) from None


_HEAD_LIMIT = 1 << 20  # a journal's first record (a study created) is far shorter
_RECORD_START = b'{"op_code":'  # how Optuna writes every record (json.dumps, op_code first)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISREG: "file",
        stat.S_ISDIR: "folder",
        stat.S_ISFIFO: "fifo",
        stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _head(path: Path) -> tuple[bytes, bool]:
    """The file's first line (at most _HEAD_LIMIT bytes) and whether it ended with a line end.

    O_NONBLOCK: a fifo put there since it was checked fails the check below, never blocks.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        head = b""
        while len(head) < _HEAD_LIMIT and b"\n" not in head:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            head += chunk
    finally:
        os.close(fd)
    line, newline, _ = head.partition(b"\n")
    return line, bool(newline)


def _not_a_journal(line: bytes, whole: bool) -> str | None:
    """Why a file whose first line is `line` is no journal, or None if it is (or is empty)."""
    if not whole:  # one line, no line end: a journal whose first record is being written
        start = re.sub(rb"\s", b"", line[: 4 * len(_RECORD_START)])
        if not line or start.startswith(_RECORD_START) or _RECORD_START.startswith(start):
            return None
        if len(line) >= _HEAD_LIMIT:
            return f"longer than {_HEAD_LIMIT >> 20} MiB"
        return "not the start of an Optuna journal record"
    try:
        record = json.loads(line)
    except ValueError as exc:  # not JSON, or not UTF-8
        return f"not a JSON record ({first_line(exc)})"
    if not isinstance(record, dict) or not isinstance(record.get("worker_id"), str):
        return "not an Optuna journal record"
    if record.get("op_code") not in OP_CODES:
        return f"a record of unknown kind (op_code {record.get('op_code')!r})"
    return None


def _torn_tail(path: Path) -> bytes | None:
    """The last line if it has no line end, else None (read without the lock)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0 or os.pread(f.fileno(), 1, size - 1) == b"\n":
            return None
        start = _last_line_start(f.fileno(), size)
        return os.pread(f.fileno(), size - start, start)


def _last_line_start(fd: int, size: int) -> int:
    """Offset just after the last line end in the file, or 0."""
    end = size
    while end > 0:
        begin = max(0, end - _CHUNK)
        found = os.pread(fd, end - begin, begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0


def _is_record(tail: bytes) -> bool:
    try:
        record = json.loads(tail)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("op_code") in OP_CODES


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
