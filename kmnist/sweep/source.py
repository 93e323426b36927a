"""Read a sweep file as plain data, with the line of every key: safe_load loses them.

The YAML is parsed twice: `yaml.compose` for positions (it builds nodes, runs no constructor) and
`yaml.safe_load` for the data. Only safe tags construct; anything else is a problem, not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Source(problems=[Problem("", f"not UTF-8 text ({exc.reason})")])
    except OSError as exc:
        return Source(problems=[Problem("", f"cannot read the file: {exc.strerror}")])
    return parse(text)


def parse(text: str) -> Source:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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
