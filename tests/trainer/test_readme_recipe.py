"""The README's fixed CPU recipe is the one bench/recipe.py measures, and the trainer takes it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kmnist.trainer.params import resolve

ROOT = Path(__file__).resolve().parents[2]


def _readme_recipe() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("# the fixed CPU recipe", 1)[1].split("\n", 1)[1]
    command = re.match(r"kmnist-sweep train ((?:.*\\\n)*.*)", block)
    assert command, "the README's recipe line is not followed by a `kmnist-sweep train` command"
    return command.group(1).replace("\\\n", " ").split()


def _bench_recipe() -> list[str]:
    tree = ast.parse((ROOT / "bench" / "recipe.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RECIPE":
            return ast.literal_eval(node.value)
    raise AssertionError("bench/recipe.py has no RECIPE")


def test_readme_shows_the_measured_recipe() -> None:
    assert _readme_recipe() == _bench_recipe()


def test_the_recipe_is_a_valid_trainer_config() -> None:
    pairs = (word.removeprefix("--").split("=", 1) for word in _bench_recipe())
    config = resolve(dict(pairs))
    assert config["model"] == "resnet" and config["epochs"] == 12
