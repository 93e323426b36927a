"""The consoles every command prints through, and the error line.

Sweep ids, paths, parameter values, metric names and failure reasons are user text: rich would
read `[/x]` as a closing tag (a MarkupError traceback), drop `[red]` from `[red]zz`, and turn
`:smile:` into an emoji. So markup and emoji codes are off on every console, tables and titles
included; a style is given as a `rich.text.Text`, never as markup.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

from kmnist.masking import mask


def stdout_console(piped_width: int | None = None) -> Console:
    """stdout; `piped_width` columns when it is not a terminal (tables as wide as they need)."""
    width = None if sys.stdout.isatty() else piped_width
    return Console(markup=False, emoji=False, width=width)


console = stdout_console()
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False)


def say(line: str) -> None:
    """One line on stderr, passwords masked, printed as given."""
    err_console.print(mask(line), soft_wrap=True)


def labelled(label: str, style: str, message: str) -> Text:
    """`label message` with only the label styled: the message is printed as given."""
    return Text.assemble((label, style), " ", message)


def fail(message: str, code: int = 2) -> None:
    """The error as one line on stderr (passwords masked), then exit `code`."""
    err_console.print(labelled("Error:", "red", mask(message)), soft_wrap=True)
    sys.exit(code)
