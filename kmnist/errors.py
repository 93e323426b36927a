"""The error types users see: the CLI prints each message as one line and exits 2 or 1."""


class UserError(Exception):
    """Bad input from the user or their environment (a file, an argument, missing data).

    The message must say what is wrong, where, and how to fix it, in one line. Exit code 2.
    """


class StorageFault(Exception):
    """The storage cannot take a write now (disk full, quota, I/O error); exit code 1.

    Raised only after the failed write is undone: every record written before it is intact.
    The message says so, in one line, and what to do.
    """


def first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, else its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
