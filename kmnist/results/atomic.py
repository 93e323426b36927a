"""Files the results commands write, whole or not at all.

A report or an export is built under a temporary name in its destination's folder (so the
rename cannot cross a filesystem) and renamed into place once complete: a full disk or a kill
mid-write leaves the earlier file at that path as it was, and no half-written one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary(path: Path) -> Path:
    """A hidden name beside `path` that no other writer picks."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically; OSError (nothing changed) to the caller."""
    tmp = _temporary(path)
    try:
        # O_EXCL: never through a planted file or link; 0o666 less the umask, as open() gives
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """A folder to fill, renamed to `path` (which must not exist) once the block ends without
    an error; on any error it is removed and `path` is not made."""
    tmp = _temporary(path)
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():  # appeared meanwhile: a rename would replace an empty folder
            raise FileExistsError(17, "already exists", str(path))
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
