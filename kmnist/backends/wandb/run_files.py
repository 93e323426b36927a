"""What a W&B run writes on this disk: room for it before it starts, and whether its `.wandb`
file holds the whole run once it has finished.

W&B does not tell its caller when it cannot write a run: on a full disk its writer (the
wandb-core service) leaves a 0-byte or cut-short `.wandb` file, Python's logging prints a
traceback for every debug-log line it cannot write (thousands), and `finish` returns as if all
were well. On an unwritable folder it quietly writes into the system's temp dir instead, where
`sync` never looks. So a run's folder is checked before `wandb.init`, and its file after.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kmnist.errors import StorageFault, UserError

# A kNN run takes about 50 KiB (its .wandb file, config, requirements, W&B's debug logs); a
# network adds a few hundred bytes per epoch. Below this, a run would not finish whole.
MIN_FREE_BYTES = 1 << 20
# `finish` returns before W&B's service has closed the run's stream and flushed its file: the
# file is read until it is whole, this long at most (a full disk gets no more room meanwhile).
FLUSH_WAIT_SECONDS, FULL_DISK_WAIT_SECONDS = 30.0, 3.0

# The `.wandb` file is a LevelDB-style log (W&B's `datastore`): a 7-byte file header, then
# records of a 7-byte header (crc32c, length, type) and a protobuf `Record`, in 32 KiB blocks.
_IDENT = b":W&B"
_HEADER = 7
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def default_dir() -> Path:
    """Where `wandb.init` writes when given no `dir`: $WANDB_DIR, else the working dir."""
    return Path(os.environ.get("WANDB_DIR") or ".").expanduser()


def require_room(folder: Path) -> None:
    """UserError unless a W&B run can be written under `folder`: it can be made, a file can
    be created in it, and MIN_FREE_BYTES are free there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise UserError(
            f"cannot write W&B runs in {folder}: {exc.strerror or exc}; set WANDB_DIR to a "
            "folder you can write"
        ) from None
    if free < MIN_FREE_BYTES:
        raise UserError(
            f"no space left for W&B runs in {folder} ({free // 1024} KiB free, a run needs "
            f"{MIN_FREE_BYTES // 1024} KiB): {_FIX}"
        )


_FIX = "free space there, or set WANDB_DIR to a folder on another disk"


def check_written(run_file: Path) -> None:
    """StorageFault unless `run_file` comes to hold a whole run. On a full disk, one that holds
    no record is removed with its folder (nothing in it to sync); one cut short is left, and
    `sync` leaves it out."""
    folder = run_file.parent
    if _flushed(run_file):
        return
    free = _free(folder)
    if free >= MIN_FREE_BYTES:  # not the disk: leave everything as it is for a look
        raise StorageFault(
            f"W&B run {folder} is not whole after {FLUSH_WAIT_SECONDS:g} s: W&B's writer "
            f"stopped (see {folder / 'logs'}); `sync` leaves it out"
        )
    why = f"no space left on its disk ({free // 1024} KiB free); {_FIX}"
    if _holds_records(run_file):
        raise StorageFault(f"W&B run {folder} is cut short: {why}; `sync` leaves it out")
    shutil.rmtree(folder, ignore_errors=True)
    raise StorageFault(f"W&B run {folder} not saved, and removed (it held no record): {why}")


def _flushed(run_file: Path) -> bool:
    """Whether `run_file` is whole, or becomes so while W&B's service flushes it."""
    room = _free(run_file.parent) >= MIN_FREE_BYTES
    deadline = time.monotonic() + (FLUSH_WAIT_SECONDS if room else FULL_DISK_WAIT_SECONDS)
    size = -1
    while True:
        now = _size(run_file)
        if now != size and complete(run_file):  # read again only once it has grown
            return True
        if time.monotonic() > deadline:
            return False
        size = now
        time.sleep(0.05)


def complete(run_file: Path) -> bool:
    """Whether `run_file` is a readable W&B run log that ends the run (has its exit record)."""
    from wandb.proto import wandb_internal_pb2 as pb  # the Record message W&B writes

    try:
        for data in _records(run_file.read_bytes()):
            if pb.Record.FromString(data).WhichOneof("record_type") == "exit":
                return True
    except (OSError, ValueError):  # unreadable, cut short, or not protobuf (DecodeError)
        return False
    return False


def _holds_records(run_file: Path) -> bool:
    try:
        return next(_records(run_file.read_bytes()), None) is not None
    except (OSError, ValueError):
        return False


def _records(data: bytes) -> Iterator[bytes]:
    """Each record's bytes; ValueError where the log is not W&B's or is cut short."""
    if not data.startswith(_IDENT) or len(data) < _HEADER:
        raise ValueError("not a W&B run file")
    pos, chunks = _HEADER, []
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        if pos + _HEADER > len(data):
            raise ValueError("cut short in a record header")
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:  # zeros: padding to the block's end (or never written)
            pos += left
            continue
        end = pos + _HEADER + length
        if end > len(data) or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            raise ValueError("cut short in a record")
        chunks.append(data[pos + _HEADER : end])
        pos = end
        if kind in (_FULL, _LAST):
            yield b"".join(chunks)
            chunks = []
    if chunks:
        raise ValueError("cut short in a record spanning blocks")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
