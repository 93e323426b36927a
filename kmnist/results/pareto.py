"""Pareto ranks of trials with several objectives: rank 1 is the front (no other trial is at
least as good on every objective and better on one), rank 2 the front once rank 1 is set
aside, and so on (non-dominated sorting)."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], goals: Sequence[str]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one."""
    signs = [1.0 if goal == "maximize" else -1.0 for goal in goals]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b, strict=True))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b, strict=True))


def ranks(points: Sequence[Sequence[float]], goals: Sequence[str]) -> list[int]:
    """The Pareto rank of each point (1: on the front)."""
    found = [0] * len(points)
    left = set(range(len(points)))
    level = 0
    while left:
        level += 1
        front = {i for i in left if not any(dominates(points[j], points[i], goals) for j in left)}
        for i in front:
            found[i] = level
        left -= front
    return found
