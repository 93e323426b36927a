"""The import rules of ARCHITECTURE.md, checked on the code: a crossing of a forbidden line fails.

Every `import` of every module under kmnist/ counts, including the lazy ones inside functions,
since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kmnist"

# wing (a module prefix) -> (the project modules it may import, the outside packages it may not).
# The most specific wing that covers a module applies.
SHARED = ("kmnist.errors", "kmnist.contract", "kmnist.masking")
TRAINER_TABLES = ("kmnist.trainer.params", "kmnist.trainer.metrics")  # pure data, no torch
ENGINES = ("optuna", "wandb", "sqlalchemy", "redis", "psycopg2")
NO_ENGINE_NO_TORCH = (*ENGINES, "torch")
PURE = (*ENGINES, "torch", "numpy")
BACKEND_MAY = ("kmnist.backends", "kmnist.sweep", *TRAINER_TABLES, *SHARED)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kmnist": ((), ()),  # the package's __init__
    "kmnist.errors": ((), PURE),
    "kmnist.masking": (("kmnist.errors",), PURE),
    "kmnist.contract": ((), PURE),
    "kmnist.trainer": (("kmnist.trainer", *SHARED), ENGINES),
    "kmnist.trainer.params": ((*TRAINER_TABLES, *SHARED), PURE),
    "kmnist.trainer.metrics": ((), PURE),
    "kmnist.sweep": (("kmnist.sweep", *TRAINER_TABLES, *SHARED), NO_ENGINE_NO_TORCH),
    "kmnist.backends": (BACKEND_MAY, ("torch",)),
    "kmnist.backends.optuna": (BACKEND_MAY, ("torch", "wandb")),
    "kmnist.backends.wandb": (BACKEND_MAY, ("torch",)),
    "kmnist.agent": (("kmnist.agent", "kmnist.backends", "kmnist.trainer", *SHARED), ENGINES),
    "kmnist.results": (
        ("kmnist.results", "kmnist.backends", "kmnist.sweep", "kmnist.trainer", *SHARED),
        (),
    ),
    "kmnist.cli": (("kmnist",), ()),
    "kmnist.wandb_entry": (("kmnist",), ()),
    "kmnist.healthcheck": ((), NO_ENGINE_NO_TORCH),  # a container probe: stdlib only
}
# The two engines do not know each other: an engine's folder imports no other engine's.
ENGINE_FOLDERS = ("kmnist.backends.optuna", "kmnist.backends.wandb")
# The interface package: a module outside kmnist.backends may import `kmnist.backends` itself
# (the Sweep protocol, records, the resolver) but not an engine's folder.
INTERFACE_ONLY = {wing: ENGINE_FOLDERS for wing in ("kmnist.agent", "kmnist.results")}


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for each import; `from X import Y` counts as X.Y when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            submodules = [name for name in submodules if is_module(name, package)]
            for name in submodules or [node.module]:
                yield node.lineno, name


def covers(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_for(module: str) -> tuple[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    wings = [wing for wing in RULES if covers(wing, module)]
    if not wings:
        raise AssertionError(f"{module}: no wing in tests/test_architecture.py RULES covers it")
    wing = max(wings, key=len)
    return wing, RULES[wing]


def is_module(name: str, package: Path) -> bool:
    """`from kmnist.x import Name` yields kmnist.x.Name too: only real modules count."""
    where = package.parent / Path(*name.split("."))
    return where.with_suffix(".py").is_file() or where.is_dir()


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    module = module_name(path, package)
    wing, (allowed, banned) = rule_for(module)
    found = []
    for line, name in imports(path, package):
        where = f"{path.relative_to(package.parent)}:{line}"
        if covers("kmnist", name):
            if not is_module(name, package):
                continue
            if not any(covers(prefix, name) for prefix in allowed):
                found.append(f"{where}: {wing} may not import {name}")
            for engine in ENGINE_FOLDERS:
                other = covers(engine, name) and not covers(engine, module)
                if covers("kmnist.backends.", module) and module != "kmnist.backends" and other:
                    found.append(f"{where}: {module} imports another engine, {name}")
            for owner, forbidden in INTERFACE_ONLY.items():
                if covers(owner, module) and any(covers(f, name) for f in forbidden):
                    found.append(f"{where}: {owner} reaches past the Sweep interface to {name}")
        elif any(covers(prefix, name) for prefix in banned):
            found.append(f"{where}: {wing} may not import {name}")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_keeps_the_import_rules(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_catches_a_crossing(tmp_path: Path) -> None:
    """Planted violations of each kind are found, so a green run above means something."""
    fake = tmp_path / "kmnist"
    planted = {
        "trainer/train.py": "import optuna\nfrom kmnist.backends.optuna import backend\n",
        "backends/optuna/backend.py": "def f():\n    from kmnist.trainer.models import cnn\n",
        "sweep/spec.py": "import optuna.samplers\n",
        "agent/loop.py": "from kmnist.backends.optuna.backend import OptunaSweep\n",
    }
    empty = ["trainer/models/cnn.py", "backends/__init__.py", "backends/optuna/__init__.py"]
    for rel in [*planted, *empty]:
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(planted.get(rel, ""))
    found = {rel: violations(fake / rel, fake) for rel in planted}
    assert found["trainer/train.py"] == [
        "kmnist/trainer/train.py:1: kmnist.trainer may not import optuna",
        "kmnist/trainer/train.py:2: kmnist.trainer may not import kmnist.backends.optuna.backend",
    ]
    assert found["backends/optuna/backend.py"] == [
        "kmnist/backends/optuna/backend.py:2: kmnist.backends.optuna may not import "
        "kmnist.trainer.models.cnn",
    ]
    assert found["sweep/spec.py"] == [
        "kmnist/sweep/spec.py:1: kmnist.sweep may not import optuna.samplers"
    ]
    assert found["agent/loop.py"] == [
        "kmnist/agent/loop.py:1: kmnist.agent reaches past the Sweep interface to "
        "kmnist.backends.optuna.backend"
    ]


# -- the document ------------------------------------------------------------------------------
WORDS = {
    "shared": SHARED,
    "trainer tables": TRAINER_TABLES,
    "engines": ENGINES,
    "torch": ("torch",),
    "numpy": ("numpy",),
    "wandb": ("wandb",),
    "nothing": (),
    "—": (),
}


def _names(cell: str) -> set[str]:
    """`kmnist.x`, shared, engines...: the modules a cell of ARCHITECTURE.md's table names."""
    cell = re.sub(r"\(not [^)]*\)", "", cell)  # "(not an engine's folder)": INTERFACE_ONLY's
    found: set[str] = set()
    for word in (w.strip().strip("`") for w in cell.split(",")):
        found.update(WORDS.get(word, (word,) if word else ()))
    return found


def test_architecture_md_states_the_rules_this_test_enforces() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:4] for line in text.splitlines() if line.startswith("| `kmnist")]
    documented = {m.strip().strip("`"): (_names(a), _names(b)) for m, a, b in rows}
    enforced = {wing: (set(allowed), set(banned)) for wing, (allowed, banned) in RULES.items()}
    assert documented == enforced
