"""The one error type users see: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user or their environment (a file, an argument, missing data).

    The message must say what is wrong, where, and how to fix it, in one line.
    """


def first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, else its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
