"""``TowerStability-v0``'s towers (DESIGN.md section 8): the seeded generator and the centre-of-mass rule.

The world of the ICML 2025 study's Cubeworld towers ("Testing the limits of fine-tuning to
improve reasoning in vision language models", section 2.3): a tower of 2-7 cubes, each with
its own edge, turn about the vertical, colour and x/y offset from the cube below; the
question is whether it falls. The verdict is the simulation's (:class:`StabilityWorld`,
whose :meth:`~envs.physics.World.settle` is the other tasks'); the centre-of-mass rule
below (pure geometry) is its test oracle and gives the episode's ``difficulty``.

Units: block edges (one world unit; a paper-task cube has edge 1), degrees for turns.
``x`` runs left to right as seen by the camera, ``y`` away from it, ``z`` up.

Generator (:func:`stability_tower`), every draw from the ``rng`` given, in this order:

* ``n`` uniform in the ``n_blocks`` range (within :data:`N_BLOCKS_LIMITS`, 2-7);
* colours: ``n`` distinct colours of :data:`envs.scenes.PALETTE` (red is the
  side-block task's and stays out);
* edges uniform in :data:`SIZE_RANGE` (0.6-0.9: a 7-cube tower stays below 6.3 edges,
  inside the fixed camera's frame, whose top is at z = 6.9 on the tower axis);
* turns about the vertical, each uniform in :data:`ROTATION_RANGE` (-45 to 45 degrees:
  a cube repeats itself every 90), independent per cube (not relative to the one below);
* offsets: the centre of cube ``k >= 1`` lies ``(dx, dy)`` from that of cube ``k - 1``,
  ``dx`` and ``dy`` each uniform in ``[-r, r]`` with ``r = OFFSET_RANGES[n]``; a pair
  whose footprint does not touch the one below (the cube would hang in the air) is
  drawn again.

Each cube sits on the top face of the one below (the bottom one on the floor), at rest.

:data:`OFFSET_RANGES` narrows with the tower's height so that about half the towers stand
at every height (DESIGN.md section 8). It was tuned by simulation on seeds 10000-10599 and
then measured out of sample, over seeds 0-999 of ``TowerStability-v0`` with
``n_blocks=(n, n)`` (``python benchmarks/world_stats.py --seeds 1000``; binomial 95%
intervals +-0.031); "rule" is the fraction the centre-of-mass rule calls stable:

======  =======  ==============  ======
height  ``r``    stable (sim.)   rule
======  =======  ==============  ======
2       0.518    0.484           0.490
3       0.418    0.499           0.508
4       0.350    0.554           0.573
5       0.328    0.476           0.503
6       0.288    0.493           0.522
7       0.268    0.489           0.539
======  =======  ==============  ======

The simulation is stricter than the rule within about 0.02 block edges of its threshold
(Bullet's rounded box edges and its solver), more so in taller towers: of 3000 towers of
2-7 cubes, 428 lay within 0.02 and 75 of those disagreed, every one a tower the rule lets
stand and the simulation fells. Beyond 0.02 the two agree on 5172 of the table's 5173
towers (``tests/envs/test_tower_stability.py`` asserts >= 0.99). The simulation runs in
:class:`StabilityWorld` (:data:`SOLVER_ITERATIONS`).

Centre-of-mass rule (:func:`com_margin`): at every level ``k >= 1``, the centre of mass
of cubes ``k..n-1`` (each of mass ``size**3``, its centre the cube's centre) lies inside
the support region of cube ``k`` on cube ``k - 1``: the overlap of their footprints, a
convex polygon (:func:`support_polygon`). The floor level is left out because it never
binds: the whole tower's centre of mass lies between the bottom cube's centre and level 1's,
so it is at least as deep inside the bottom footprint as level 1's is inside its smaller
region (or less far outside). The margin is the signed distance of the centre of mass
from the region's boundary, smallest over levels: positive inside (the rule says the tower
stands), negative outside; its size is the distance from the threshold in block edges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bullet import pybullet as p
from .physics import World
from .scenes import PALETTE, Cube, Scene, check_int_range

__all__ = ["stability_tower", "footprint", "support_polygon", "signed_distance", "com_margin",
           "yaw_of", "tower_info", "StabilityWorld", "SOLVER_ITERATIONS", "SIZE_RANGE", "ROTATION_RANGE",
           "N_BLOCKS_LIMITS", "OFFSET_RANGES", "FAMILY"]

FAMILY = "stability"
SIZE_RANGE = (0.6, 0.9)  # block edges
ROTATION_RANGE = (-45.0, 45.0)  # degrees about the vertical
N_BLOCKS_LIMITS = (2, 7)
# Tower height -> r, the half-width of the uniform x and y offsets (block edges); the table above.
OFFSET_RANGES: dict[int, float] = {2: 0.518, 3: 0.418, 4: 0.35, 5: 0.328, 6: 0.288, 7: 0.268}
# Redraws of one offset before giving up; a touching pair is drawn at least 40% of the time,
# so reaching this means a bug, not bad luck.
_MAX_REDRAWS = 1000
_AREA_EPS = 1e-12  # block edges squared: a thinner overlap is a touch, not a support
# Bullet's default of 50 sequential-impulse iterations does not converge on a stack of 5-7 cubes:
# it sags and creeps, and towers with centre-of-mass margins of 0.02-0.04 edges collapse after 1-2
# simulated seconds (measured: 39 of 400 seven-cube towers, none with a margin beyond 0.05). 100
# iterations leave no disagreement beyond 0.02 edges at 1.4x the cost; 200 and 400 change only
# scenes within 0.02 of the threshold, at 2x and 2.8x.
SOLVER_ITERATIONS = 100


def _quaternion(yaw_deg: float) -> tuple[float, float, float, float]:
    half = math.radians(yaw_deg) / 2
    return (0.0, 0.0, math.sin(half), math.cos(half))


def yaw_of(cube: Cube) -> float:
    """The cube's turn about the vertical in degrees, in (-180, 180] (its xyzw quaternion read as a yaw)."""
    _, _, qz, qw = cube.orientation
    return math.degrees(2.0 * math.atan2(qz, qw)) if qw >= 0 else math.degrees(2.0 * math.atan2(-qz, -qw))


def footprint(cube: Cube) -> np.ndarray:
    """The cube's footprint on the horizontal plane: ``(4, 2)`` float64 corners (x, y), counter-clockwise.

    The cube is taken as turned about the vertical only (the generator's cubes are).
    """
    a = math.radians(yaw_of(cube))
    c, s, h = math.cos(a), math.sin(a), cube.size / 2
    corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
    return np.array([(cube.x + c * u - s * v, cube.y + s * u + c * v) for u, v in corners], dtype=np.float64)


def _clip(polygon: list[tuple[float, float]], a: np.ndarray, b: np.ndarray) -> list[tuple[float, float]]:
    # Sutherland-Hodgman: keep the part of polygon left of the directed edge a -> b.
    def side(q):
        return (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])

    out: list[tuple[float, float]] = []
    for i, cur in enumerate(polygon):
        prev = polygon[i - 1]
        sc, sp = side(cur), side(prev)
        if sc >= 0:
            if sp < 0:
                t = sp / (sp - sc)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            out.append(cur)
        elif sp >= 0:
            t = sp / (sp - sc)
            out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
    return out


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def support_polygon(lower: Cube, upper: Cube) -> np.ndarray:
    """The overlap of two cubes' footprints, where ``upper`` rests on ``lower``.

    Returns:
        ``(k, 2)`` float64 corners, counter-clockwise, ``3 <= k <= 8``; ``(0, 2)`` when the
        footprints do not overlap (or only touch).
    """
    poly = [tuple(v) for v in footprint(upper)]
    edge = footprint(lower)
    for i in range(4):
        poly = _clip(poly, edge[i], edge[(i + 1) % 4])
        if not poly:
            break
    out = np.array(poly, dtype=np.float64).reshape(-1, 2)
    return out if len(out) >= 3 and _area(out) > _AREA_EPS else np.zeros((0, 2))


def _segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(q - a, ab) / max(float(np.dot(ab, ab)), 1e-300), 0.0, 1.0))
    return float(np.hypot(*(q - a - t * ab)))


def signed_distance(point, polygon: np.ndarray) -> float:
    """Signed distance of ``point`` (x, y) from the boundary of a convex counter-clockwise polygon.

    Positive inside (the distance to the nearest edge), negative outside (minus the
    distance to the polygon), block edges.

    Raises:
        ValueError: ``polygon`` has fewer than 3 corners.
    """
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 corners, got {len(polygon)}")
    q = np.asarray(point, dtype=np.float64)
    edges = [(polygon[i], polygon[(i + 1) % len(polygon)]) for i in range(len(polygon))]
    # Distance to each edge's line, positive on its inner (left) side; inside the polygon the
    # smallest is the distance to the boundary.
    inner = [((b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])) / float(np.hypot(*(b - a)))
             for a, b in edges]
    if min(inner) >= 0:
        return float(min(inner))
    return -min(_segment_distance(q, a, b) for a, b in edges)


def _nearest_set(polygon: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The points of convex `polygon` nearest to convex `other` (disjoint, or touching without
    # overlap) form a point or a segment; returns its two ends (equal for a point). Candidates
    # are every vertex-edge pair's nearest point on `polygon`; the ends are the two farthest apart
    # among those within a hair of the smallest distance.
    found: list[tuple[float, np.ndarray]] = []
    n, m = len(polygon), len(other)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        for j in range(m):
            found.append((_segment_distance(polygon[i], other[j], other[(j + 1) % m]), polygon[i]))
            ab = b - a
            t = float(np.clip(np.dot(other[j] - a, ab) / float(np.dot(ab, ab)), 0.0, 1.0))
            found.append((float(np.hypot(*(other[j] - a - t * ab))), a + t * ab))
    best = min(d for d, _ in found)
    near = [q for d, q in found if d <= best + 1e-9]
    ends = max(((q, r) for q in near for r in near), key=lambda qr: float(np.hypot(*(qr[0] - qr[1]))))
    return ends


def com_margin(scene: Scene) -> float:
    """Signed margin of the recursive centre-of-mass rule, block edges (see the module docstring).

    Positive: the rule says the tower stands; negative: it falls. Where a cube's footprint
    does not overlap the one below (or only touches it), that level's margin is minus the
    distance from the centre of mass above to the lower footprint's points nearest the upper
    one (a point or a segment: the limit of a vanishing overlap).

    Raises:
        ValueError: the scene has fewer than 2 cubes.
    """
    cubes = scene.cubes
    if len(cubes) < 2:
        raise ValueError(f"the centre-of-mass rule needs a tower of at least 2 cubes, got {len(cubes)}")
    masses = np.array([c.size ** 3 for c in cubes])
    centres = np.array([(c.x, c.y) for c in cubes])
    margin = math.inf
    for k in range(1, len(cubes)):
        com = masses[k:] @ centres[k:] / masses[k:].sum()
        support = support_polygon(cubes[k - 1], cubes[k])
        if len(support):
            level = signed_distance(com, support)
        else:
            level = -_segment_distance(com, *_nearest_set(footprint(cubes[k - 1]), footprint(cubes[k])))
        margin = min(margin, level)
    return float(margin)


def stability_tower(rng: np.random.Generator, n_blocks: tuple[int, int] = N_BLOCKS_LIMITS) -> Scene:
    """A ``stability`` scene drawn from ``rng`` (the module docstring gives every distribution).

    Returns:
        a :class:`~envs.scenes.Scene` of family ``"stability"``, cubes bottom to top,
        ``target`` the top cube (nothing is moved: it names the cube whose offset
        ``Scene.offset`` reports, as in ``top_block``).

    Raises:
        ValueError: ``n_blocks`` is not a pair of ints within [2, 7].
    """
    lo, hi = check_int_range("n_blocks", n_blocks, *N_BLOCKS_LIMITS)
    n = int(rng.integers(lo, hi + 1))
    names = list(PALETTE)
    colours = [PALETTE[names[i]] for i in rng.choice(len(names), size=n, replace=False)]
    sizes = [float(v) for v in rng.uniform(*SIZE_RANGE, size=n)]
    yaws = [float(v) for v in rng.uniform(*ROTATION_RANGE, size=n)]
    r = OFFSET_RANGES[n]
    cubes = [Cube(0.0, 0.0, sizes[0] / 2, sizes[0], colours[0], _quaternion(yaws[0]))]
    for k in range(1, n):
        below = cubes[-1]
        z = below.z + (below.size + sizes[k]) / 2
        for _ in range(_MAX_REDRAWS):
            dx, dy = (float(v) for v in rng.uniform(-r, r, size=2))
            cube = Cube(below.x + dx, below.y + dy, z, sizes[k], colours[k], _quaternion(yaws[k]))
            if len(support_polygon(below, cube)):
                break
        else:  # pragma: no cover - see _MAX_REDRAWS
            raise RuntimeError(f"no touching offset within +-{r} in {_MAX_REDRAWS} draws")
        cubes.append(cube)
    return Scene(FAMILY, tuple(cubes), n - 1)


class StabilityWorld(World):
    """:class:`envs.physics.World` for ``stability`` scenes: the same room, cubes, time step and
    verdict, with the constraint solver run for :data:`SOLVER_ITERATIONS` iterations a step.

    A separate world, not a change to :mod:`envs.physics`, so the other tasks' episodes stay as
    they were, bit for bit.
    """

    def load(self, scene: Scene) -> None:
        """As :meth:`envs.physics.World.load`, then :data:`SOLVER_ITERATIONS` (every load: resetting
        the simulation puts Bullet's default back)."""
        super().load(scene)
        p.setPhysicsEngineParameter(numSolverIterations=SOLVER_ITERATIONS, physicsClientId=self.client)


def tower_info(scene: Scene) -> dict[str, Any]:
    """The ``info`` keys of a ``stability`` scene (plain floats and lists, JSON-serialisable).

    Returns:
        ``sizes`` (``n`` edges, bottom first), ``rotations`` (``n`` turns about the vertical,
        degrees), ``offsets`` (``n - 1`` pairs ``[dx, dy]``: cube ``k + 1``'s centre from cube
        ``k``'s, block edges), ``com_margin`` (:func:`com_margin`, signed) and ``difficulty``
        (its absolute value: the distance of the rule from its threshold; small is hard).
    """
    cubes = scene.cubes
    margin = com_margin(scene)
    return {
        "sizes": [c.size for c in cubes],
        "rotations": [yaw_of(c) for c in cubes],
        "offsets": [[b.x - a.x, b.y - a.y] for a, b in zip(cubes, cubes[1:])],
        "com_margin": margin,
        "difficulty": abs(margin),
    }
