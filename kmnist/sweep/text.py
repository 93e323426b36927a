"""How a problem names what it found: values shown as YAML, close words hinted, numbers told."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import yaml

from kmnist.sweep.source import number_spelling


def show(value: Any) -> str:
    """A value as the user wrote it: strings quoted, the rest as YAML, cut at 60 characters."""
    text = repr(value) if isinstance(value, str) else yaml_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        try:
            return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        except yaml.YAMLError:
            return "a list" if isinstance(value, list) else "a mapping"
    return str(value)


def hint(word: Any, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close choice, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def expected_number(value: Any, what: str = "a number") -> str:
    """'expected a number, got ...', with the fix for PyYAML's `1e-5`-is-a-string pitfall."""
    text = f"expected {what}, got {show(value)}"
    whole = "whole" in what or "integer" in what
    fixed = number_spelling(value, whole) if isinstance(value, str) else None
    if fixed:
        return f"{text}: YAML reads {value.strip()} as a string; write {fixed}"
    return text


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    # JSON schema's "integer": 5 or 5.0, never true/false
    return is_number(value) and float(value).is_integer()
