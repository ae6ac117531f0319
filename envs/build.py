"""``TowerBuild-v0``'s world rules: which cubes can be lifted, where one comes to rest, the tower, the oracle.

A ``build`` scene (:func:`envs.scenes.tower_build`) holds the grey base cube (index 0, on
``x = 0``) and coloured cubes on the floor. One move (``<answer>COLOUR, X</answer>``) lifts
the floor cube of that colour and sets it down upright with its centre at ``x = X / 100``
block edges from the base cube's centre, resting on whatever lies below that point (the
highest top face it overlaps, else the floor), then the world is simulated to its verdict
(:meth:`envs.physics.World.settle`). Pure geometry here; the simulation is the caller's.

* Movable: a coloured cube resting on the floor (its bottom within :data:`FLOOR_TOL` of
  z = 0) with nothing on top of it. Cubes set on the tower (or on another cube) stay
  where they are; the base is never movable.
* The tower: the base and the column of cubes resting on it, each on the one below
  (bottom face within :data:`CONTACT_TOL` of the top face under it, overlapping in x).
  Its height is counted in cubes, the base included.
* The oracle: the largest movable cube (ties: the first in scene order), set on the
  tower's top cube, centred (``X = round(100 x_top)``). Centred stacks stand whatever the
  order; largest first leaves each cube the widest support, so that a misplaced cube has
  the most room (with ``sizes``, order matters to a policy that does not centre exactly).
"""

from __future__ import annotations

from dataclasses import replace

from .scenes import COLOR_NAMES, IDENTITY, Scene

__all__ = ["colour_name", "movable", "tower_stack", "place", "optimal_answer", "FLOOR_TOL", "CONTACT_TOL"]

FLOOR_TOL = 0.05  # block edges: a resting cube's bottom face lies this close to the floor
CONTACT_TOL = 0.05  # block edges: a stacked cube's bottom lies this close to the top under it


def colour_name(color: tuple[int, int, int]) -> str:
    """The name of an RGB colour of :data:`envs.scenes.COLOR_NAMES` (``"green"``), else ``"r,g,b"``."""
    return COLOR_NAMES.get(tuple(color), ",".join(str(v) for v in color))


def _supports(lower, upper) -> bool:
    reach = (lower.size + upper.size) / 2 - 1e-6
    bottom, top = upper.z - upper.size / 2, lower.z + lower.size / 2
    return abs(bottom - top) < CONTACT_TOL and abs(lower.x - upper.x) < reach and abs(lower.y - upper.y) < reach


def tower_stack(scene: Scene) -> list[int]:
    """Indices of the tower's cubes, bottom (the base, 0) to top."""
    stack = [0]
    rest = set(range(1, len(scene.cubes)))
    while True:
        top = scene.cubes[stack[-1]]
        above = [i for i in sorted(rest) if _supports(top, scene.cubes[i])]
        if not above:
            return stack
        stack.append(above[0])
        rest.discard(above[0])


def movable(scene: Scene) -> list[int]:
    """Indices of the cubes a move can lift: coloured, on the floor, nothing on top."""
    out = []
    for i, c in enumerate(scene.cubes):
        if i == 0 or abs(c.z - c.size / 2) > FLOOR_TOL:
            continue
        if any(_supports(c, o) for j, o in enumerate(scene.cubes) if j != i):
            continue
        out.append(i)
    return out


def place(scene: Scene, index: int, x: float) -> Scene:
    """A copy of ``scene`` with cube ``index`` set down upright at ``x`` (block edges), on whatever is below.

    It keeps its y and rests on the highest top face it overlaps (others' poses taken
    as axis-aligned), else on the floor.
    """
    lifted = replace(scene, target=index)
    z = lifted.resting_z(x)
    cubes = list(scene.cubes)
    cubes[index] = replace(cubes[index], x=float(x), z=float(z), orientation=IDENTITY)
    return replace(scene, cubes=tuple(cubes))


def optimal_answer(scene: Scene) -> str:
    """The oracle's move from ``scene`` (see the module docstring); ``<answer>none, 0</answer>`` if
    nothing can be moved (the episode has ended then)."""
    free = movable(scene)
    if not free:
        return "<answer>none, 0</answer>"
    best = max(free, key=lambda i: (scene.cubes[i].size, -i))
    top = scene.cubes[tower_stack(scene)[-1]]
    x = max(-600, min(600, int(round(top.x * 100))))
    return f"<answer>{colour_name(scene.cubes[best].color)}, {x}</answer>"
