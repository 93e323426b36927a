"""Read a sweep file as plain data, with the line of every key: safe_load loses them.

The YAML is composed once into nodes (their marks give the lines), and the data is constructed
from those nodes. Only safe tags construct; anything else is a problem, not code.

Everything is bounded before it can cost much: the bytes read (a regular file of at most
MAX_BYTES), the nesting depth, the nodes after alias expansion ("billion laughs" is refused
at the first level that expands past MAX_NODES), and integers (64-bit, as W&B's server keeps
them). A hostile file is one problem, found in milliseconds and a few MB of memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 256 * 1024  # sweep files are a few KiB; parsing this much takes ~0.2 s
MAX_DEPTH = 64  # mappings and lists inside each other (16 nested parameter groups use 34)
MAX_NODES = 10_000  # keys, values and items, each alias counted as the nodes it stands for
INT_LIMIT = 2**63  # integers lie in [-2^63, 2^63)
_INT_TEXT = 80  # longer integer literals are refused before Python converts them
_RECHECK_CHARS = 64 * 1024  # the pure-Python parser reads this much in about 0.1 s

Path_ = tuple[str, ...]  # a key path such as ("parameters", "lr", "min"); list items as "[0]"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a sweep file, at a key path and a line (1-based)."""

    path: str
    message: str
    line: int = 1

    def render(self, filename: str) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{filename}:{self.line}: {where}{self.message}"


@dataclass
class Source:
    """A parsed document, or the problems that stopped it parsing; `lines` maps paths to lines."""

    data: Any = None
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its closest ancestor present in the file."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


class Report:
    """The problems found in one document, each placed at its key path's line."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(dotted(path), message, self.source.line(path)))

    def __len__(self) -> int:
        return len(self.problems)


def dotted(path: Path_) -> str:
    """("parameters", "lr", "values", "[0]") → parameters.lr.values[0]."""
    return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(path))


def read(path: Path) -> Source:
    try:
        raw = _read_bounded(path)
    except _Refused as exc:
        return Source(problems=[Problem("", str(exc))])
    except OSError as exc:
        return Source(problems=[Problem("", f"cannot read the file: {exc.strerror or exc}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Source(problems=[Problem("", f"not UTF-8 text ({exc.reason})")])
    return parse(text)


def _read_bounded(path: Path) -> bytes:
    """At most MAX_BYTES of a regular file; a device, pipe or bigger file is refused."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _Refused("a folder, not a sweep file")
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(
                "not a regular file (a device, pipe or socket): save the sweep to a file"
            )
        raw = b""
        while len(raw) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(raw))):
            raw += chunk
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        size = max(info.st_size, len(raw))
        raise _Refused(
            f"{size:,} bytes, over the {MAX_BYTES // 1024} KiB a sweep file may hold: "
            "is this the right file?"
        )
    return raw


class _Refused(Exception):
    """A file or document over a bound; the message is the problem, `line` where it is."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else 1


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's parser where PyYAML has it) whose integers are 64-bit."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > _INT_TEXT:  # before Python's int() spends time on it
            raise _Refused(f"integer of {len(node.value)} digits: far too large", node.start_mark)
        value = super().construct_yaml_int(node)
        if not -INT_LIMIT <= value < INT_LIMIT:
            raise _Refused(f"integer {node.value} is out of range: at most 2^63", node.start_mark)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_bounds(text: str) -> None:
    """Refuse deep nesting, alias loops and alias blow-ups from the event stream, early.

    The stream is read one event at a time and dropped at the first bound crossed, before any
    node is built: a "billion laughs" stops at the alias that takes it over MAX_NODES, deep
    nesting at level MAX_DEPTH + 1 (libyaml slows down quadratically with flow depth).
    """
    try:
        _scan_bounds(text, _Loader)
    except yaml.YAMLError as exc:
        # libyaml reads flow collections far ahead of the events it hands out, and may refuse
        # first (PyYAML 6.0.4's libyaml stops at 1,000 levels): the pure-Python parser hands
        # out events as it reads, so re-reading the part libyaml got through lets our bound
        # speak, naming our limit. A file within every bound keeps libyaml's own problem.
        mark = getattr(exc, "problem_mark", None)
        if mark is not None and mark.index <= _RECHECK_CHARS:
            _scan_bounds_quietly(text[: mark.index + 1])
        raise


def _scan_bounds_quietly(text: str) -> None:
    """_scan_bounds by the pure-Python parser: a bound crossed raises, a syntax error does not."""
    with contextlib.suppress(yaml.YAMLError):
        _scan_bounds(text, yaml.SafeLoader)


def _scan_bounds(text: str, loader_class: type) -> None:
    loader = loader_class(text)
    open_nodes: list[list[Any]] = []  # [anchor, nodes so far] per collection being read
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    total = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                if any(entry[0] == event.anchor for entry in open_nodes):
                    raise _Refused(
                        f"alias *{event.anchor} lies inside the node it names", event.start_mark
                    )
                size = sizes.get(event.anchor, 1)  # undefined: the composer says so
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(open_nodes) >= MAX_DEPTH:
                    raise _Refused(f"nested over {MAX_DEPTH} levels deep", event.start_mark)
                open_nodes.append([event.anchor, 1])
                size = 1
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = size
                if open_nodes:
                    open_nodes[-1][1] += size
                continue  # its nodes were counted as they came
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            else:
                continue
            if open_nodes and not isinstance(event, yaml.CollectionStartEvent):
                open_nodes[-1][1] += size
            total += size
            if total > MAX_NODES:
                raise _Refused(
                    f"over {MAX_NODES:,} keys and values once its aliases are expanded",
                    event.start_mark,
                )
    finally:
        loader.dispose()


def parse(text: str) -> Source:
    if len(text) > MAX_BYTES:
        return Source(problems=[Problem("", f"over the {MAX_BYTES // 1024} KiB a sweep may hold")])
    try:
        _check_bounds(text)
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except _Refused as exc:
        return Source(problems=[Problem("", exc.args[0], exc.line)])
    except yaml.YAMLError as exc:
        return Source(problems=[_yaml_problem(exc)])
    source = Source(data=data)
    if root is None or data is None:
        source.problems.append(Problem("", "the file is empty: expected a W&B sweep mapping"))
        return source
    _walk(root, (), source)
    return source


def _walk(node: yaml.Node, path: Path_, source: Source) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            source.lines[child] = key_node.start_mark.line + 1
            if key in seen:  # PyYAML keeps the last silently; W&B would see only that one
                line = key_node.start_mark.line + 1
                source.problems.append(Problem(".".join(child), "duplicate key", line))
            seen.add(key)
            _walk(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, f"[{index}]")
            source.lines[child] = item.start_mark.line + 1
            _walk(item, child, source)


_TAG = re.compile(r"tag '([^']*)'")
_EXPONENT = re.compile(r"^([-+]?)(\d*)(?:\.(\d*))?[eE]([-+]?)(\d+)$")


def number_spelling(text: str, whole: bool = False) -> str | None:
    """How to write `text` so YAML reads a number, if it is a number YAML reads as a string.

    PyYAML (YAML 1.1) reads a float only with a dot in the mantissa and a sign in the
    exponent: `1e-5`, `1e3` and `1.0e3` are strings, `1.0e-5` and `1.0e+3` are floats. With
    `whole`, a whole number is spelled as the integer (`1e3` -> 1000).
    """
    match = _EXPONENT.match(text.strip())
    if not match or not (match.group(2) or match.group(3)):
        return None
    sign, units, fraction, exp_sign, exponent = match.groups()
    value = float(text)
    if not math.isfinite(value):
        return None
    if whole and value.is_integer() and abs(value) < INT_LIMIT:
        return str(int(value))
    spelled = f"{sign}{units or '0'}.{fraction or '0'}e{exp_sign or '+'}{exponent}"
    return spelled if isinstance(yaml.safe_load(spelled), float) else None


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark else 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.constructor.ConstructorError) and (tag := _TAG.search(problem)):
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return Problem("", f"YAML tag '{name}' is not allowed: sweep files hold plain data", line)
    if "another document" in problem:
        return Problem("", "more than one YAML document: a sweep file holds exactly one", line)
    context = getattr(exc, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return Problem("", f"YAML syntax error: {detail}", line)
