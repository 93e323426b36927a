"""Ax's log on an agent's stderr: its warnings and errors only.

Ax logs every step at INFO through its own stderr handler; W&B's scheduler routes that log to
its own file. Here only Ax's warnings reach the user, from the moment Ax is imported.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


def quiet() -> None:
    """Warnings and errors only, from Ax's import on (its import itself logs at INFO)."""
    before = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        from ax.utils.common import logger as ax_logger
    finally:
        logging.disable(before)
    ax_logger.ROOT_STREAM_HANDLER.setLevel(logging.WARNING)


@contextlib.contextmanager
def errors_only() -> Iterator[None]:
    """Ax's errors alone, for a step whose warnings are how Ax works, not news."""
    from ax.utils.common import logger as ax_logger

    handler = ax_logger.ROOT_STREAM_HANDLER
    level = handler.level
    handler.setLevel(logging.ERROR)
    try:
        yield
    finally:
        handler.setLevel(level)
