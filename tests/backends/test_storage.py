"""Storage URLs users get wrong: one line, exit 2, and never the password."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("postgresql://me:hunter2secret@127.0.0.1:1/db", "Connection refused"),  # nothing listens
        ("postgresql://postgres@127.0.0.1:5432/no_such_db_kmnist", "does not exist"),
        ("ftp://example/x", "unknown storage URL"),
    ],
)
def test_bad_storage_is_one_masked_line(url: str, fragment: str) -> None:
    for command in (["agent", "some-sweep"], ["ls"]):
        proc = subprocess.run(
            ["kmnist-sweep", *command, "--storage", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert fragment in proc.stderr
        assert "hunter2secret" not in proc.stderr + proc.stdout
