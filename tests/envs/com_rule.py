"""The centre-of-mass rule: the test oracle for the physics verdict (DESIGN.md section 2)."""

from __future__ import annotations

import numpy as np

from envs.scenes import Cube, Scene


def com_margin(xs: list[float]) -> float:
    """Signed margin of the COM rule for a stack of unit cubes with centres ``xs`` (bottom first).

    For every level i >= 1, the centre of mass of cubes i.. must lie over the top
    face of cube i - 1: ``|mean(xs[i:]) - xs[i-1]| < 0.5``. Returns the smallest
    ``0.5 - |mean(xs[i:]) - xs[i-1]|`` over levels: positive means stable, and
    its size is the distance from the threshold in block edges.
    """
    return min(0.5 - abs(float(np.mean(xs[i:])) - xs[i - 1]) for i in range(1, len(xs)))


def random_stack(rng: np.random.Generator, n: int) -> Scene:
    """A stack of ``n`` unit cubes, each shifted by up to 0.9 edges from the one below."""
    xs = [0.0]
    for _ in range(n - 1):
        xs.append(xs[-1] + float(rng.uniform(-0.9, 0.9)))
    cubes = tuple(Cube(x, 0.0, i + 0.5, 1.0, (200, 50, 50)) for i, x in enumerate(xs))
    return Scene("top_block", cubes, n - 1)
