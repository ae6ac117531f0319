"""``ShapeStacksStability-v0``'s stacks (DESIGN.md section 8): the seeded generator and the stability rule.

The world of the ShapeStacks study (Groth, Fuchs, Posner & Vedaldi, "ShapeStacks: Learning
vision-based physical intuition for generalised object stacking", ECCV 2018; the 2026 VLM
diagnostic on it, ``../shared/data/paper-prompts.md``): a single stack of 2-6 cubes, cuboids,
cylinders and spheres, balanced (``True``) or about to collapse (``False``). An unbalanced
stack breaks one of ShapeStacks' two rules: the centre-of-mass rule (the blocks above a level
overhang their support) or the planar-surface rule (a block rests on a sphere or on a
cylinder's curved side). The verdict is the simulation's (:class:`ShapeStacksWorld`); the rule
below (pure geometry) is its test oracle and gives the episode's ``difficulty``.

Units: block edges (one world unit), degrees for turns; ``x`` left to right as the camera
sees it, ``y`` away from it, ``z`` up. Density 1: a block's mass is its volume.

Blocks (:class:`envs.scenes.Cube` with ``shape``/``extents``; ``size`` is the largest extent),
each kind's dimensions uniform in the ranges of :data:`DIMENSIONS`:

* ``cube`` (edge 0.6-0.95), turned about the vertical by -45 to 45 degrees;
* ``cuboid`` (x, y sides 0.6-1.1, height 0.45-0.9), turned by -90 to 90;
* ``cylinder`` standing upright (diameter 0.6-1.0, height 0.5-0.95): flat top and bottom,
  a disc footprint;
* ``sphere`` (diameter 0.55-0.85) and ``lying``, a cylinder on its curved side (diameter
  0.5-0.8, length 0.8-1.2, its axis -30 to 30 degrees from x so the camera sees its side).

A 6-block stack is at most 5.7 edges tall, inside the camera's frame (top z = 6.9).

Generator (:func:`shape_stack`), every draw from the ``rng`` given, in this order: the height
``n`` uniform in ``height``; the level, easy or hard with equal odds unless ``difficulty`` is
given; stable with probability :data:`P_STABLE` ``[level][n]`` (the label is drawn first and
the stack built to it); if not, a planar-surface violation with probability
:data:`P_PLANAR` ``[level]``, else a centre-of-mass one, at a level ``j`` uniform in ``1..n-1``
(block ``j`` on block ``j - 1``); ``n`` distinct colours of :data:`envs.scenes.PALETTE`. Then
up to :data:`_MAX_ATTEMPTS` attempts, each drawing every block's kind (uniform among the
allowed: the top block any of the five kinds, the others the three flat ones; block ``j - 1``
of a planar violation a sphere or lying cylinder; flat, the top block of a hard 2-stack and
block ``j`` of a violation, since a curved top block never binds, see ``_meets``), its
dimensions and turn, then up to :data:`_OFFSET_TRIES` draws of offsets, until the stack meets
its class:

* every block's centre lies ``(dx, dy)`` from the one below, ``dx`` uniform in ``[-r, r]`` and
  ``dy`` in ``[-r, r]`` times :data:`DEPTH_SCALE` (the nearly level camera hardly sees depth),
  ``r = R_EASY`` (easy) or ``R_HARD[n]`` (hard); then a depth ``e`` uniform in
  :data:`VIOLATION_DEPTH` ``[level]``, an angle uniform in ``[-pi, pi)`` and a fraction
  uniform in ``[-0.25, 0.25]``. An easy centre-of-mass violation slides blocks ``j..`` (by
  bisection) until level ``j``'s margin is ``-e``: to the right for a positive angle, else to
  the left, at ``(|angle| / pi - 0.5) * 60`` degrees from the x axis (an overhang in depth
  hardly shows from the camera). A planar violation
  moves blocks ``j..`` so that their centre of mass lies ``e`` from the sphere's top point (in
  the angle's direction) or across the lying cylinder's top line (the angle's sign giving the
  side; along the line the fraction of its length);
* easy stable: the rule's margin (below) at least :data:`EASY_MARGIN`; easy violations: every
  level above the violation at least :data:`SAFE_MARGIN` (one clear violation; a light block
  may give way below a heavy overhang too), a planar one with every level but its two at least
  ``SAFE_MARGIN``; hard: ``|margin|`` within :data:`HARD_MARGIN` (a stack that barely stands,
  or a subtle violation; a planar one with its other levels at least ``HARD_MARGIN[0]``), and
  stable or centre-of-mass hard stacks visibly offset across the image (``|dx|`` at least
  :data:`VISIBLE_OFFSET`) at ``min(2, n - 1)`` levels or more;
* every block rests on the one below: two flat footprints overlap in a region that holds a
  disc of radius :data:`CONTACT_DEPTH`, and a sphere's or lying cylinder's centre lies
  :data:`CURVED_INSET` inside the flat face it touches (:data:`EASY_MARGIN` for a curved top
  block, whose margin that is, so that it never binds).

Stability rule (:func:`level_margins`, :func:`com_margin`): at each level ``k`` (block ``k`` on
block ``k - 1``, or on the floor), the centre of mass of blocks ``k..`` must lie inside the
contact set of the two. Two flat faces (a cube's, a cuboid's, an upright cylinder's) touch in
the overlap of their footprints (an upright cylinder's is its disc, computed exactly:
:mod:`envs.shape_geometry`); the margin is the signed distance of the centre of mass from its
boundary (positive inside). A sphere touches a face in a point, a lying
cylinder in a segment (its bottom or top line, clipped to the face): a region without area,
so the margin is minus the distance of the centre of mass from it: a block on a sphere or a
curved side (a planar-surface violation), or a sphere or lying cylinder that carries one, is
unstable, the margin saying how far off balance it is. The exception is the top block: a
sphere or lying cylinder on top carries nothing and stands wherever its contact lies on the
face below (neutral equilibrium); its margin is the signed distance of its centre from that
face's boundary. The floor level counts only under a sphere or lying cylinder (under a flat
block it never binds; :mod:`envs.stability_towers` gives the argument). ``com_margin`` is the
smallest level's margin: positive, the rule says the stack stands. A level whose blocks do
not touch at all gets minus the larger distance of the centre of mass from the two sets.
The episode's ``difficulty_level`` is read off the margin (:func:`difficulty_level`), so a
replayed scene reports the level its generator drew.

Measured over seeds 0-999 per cell, ``height=(n, n)`` and ``difficulty=level`` (``python
benchmarks/world_stats.py --env ShapeStacksStability-v0 --seeds 1000``; binomial 95% intervals
+-0.031); "stable" is the simulation's fraction, "rule" the rule's, ms a reset (render + settle):

======  ===========  ===========  ============  ============  ==============
height  easy stable  hard stable  easy (rule)   hard (rule)   ms/scene (e/h)
======  ===========  ===========  ============  ============  ==============
2       0.484        0.484        0.484         0.484         22 / 10
3       0.484        0.484        0.484         0.484         17 / 19
4       0.484        0.484        0.484         0.484         27 / 35
5       0.484        0.484        0.484         0.484         36 / 58
6       0.484        0.483        0.484         0.484         49 / 77
======  ===========  ===========  ============  ============  ==============

The fractions are equal because the label is the first draw after the same number of draws in
every cell (:data:`P_STABLE` is 0.5 throughout), so a seed's label is the same in every cell;
its stack differs. The rule and the simulation agreed on 9999 of these 10000 stacks (the other,
seed 126 of height 6 hard, margin 0.064, has a lying cylinder on top that rolls past the
5-degree tolerance after 3.6 s of the stack's settling), and on 598 of 600 tuning stacks (seeds
10000 on; two hard 5- and 6-stacks, margins 0.034 and 0.038, moved after 2.9 s); none lies
within 0.02 edges of the threshold (the generator keeps ``|margin| >= 0.03``), so nothing needed
tuning beyond the class bounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import shape_geometry as geom
from .bullet import pybullet as p
from .physics import World
from .scenes import IDENTITY, PALETTE, Cube, Scene, check_int_range
from .shape_geometry import (
    ON_SIDE,
    contact_set,
    extents_of,
    kind_of,
    quaternion_product,
    volume,
    yaw_quaternion,
    z_axis,
)
from .stability_towers import SOLVER_ITERATIONS, yaw_of

__all__ = ["shape_stack", "check_difficulty", "kind_of", "volume", "level_margins", "com_margin",
           "difficulty_level", "stack_info", "ShapeStacksWorld", "FAMILY", "HEIGHT_LIMITS", "DIFFICULTIES",
           "DIMENSIONS", "P_STABLE", "P_PLANAR", "R_EASY", "R_HARD", "VIOLATION_DEPTH",
           "EASY_MARGIN", "SAFE_MARGIN", "HARD_MARGIN", "VISIBLE_OFFSET", "DEPTH_SCALE",
           "CONTACT_DEPTH", "CURVED_INSET", "ROLLING_FRICTION"]

FAMILY = "shapestacks"
HEIGHT_LIMITS = (2, 6)
DIFFICULTIES = ("easy", "hard")
# Kind -> ranges (block edges) of its dimensions, in the order _block reads them.
DIMENSIONS: dict[str, tuple[tuple[float, float], ...]] = {
    "cube": ((0.6, 0.95),),
    "cuboid": ((0.6, 1.1), (0.6, 1.1), (0.45, 0.9)),
    "cylinder": ((0.6, 1.0), (0.5, 0.95)),  # diameter, height
    "sphere": ((0.55, 0.85),),
    "lying": ((0.5, 0.8), (0.8, 1.2)),  # diameter, length
}
_HEIGHT_INDEX = {"cube": 0, "cuboid": 2, "cylinder": 1, "sphere": 0, "lying": 0}  # which of DIMENSIONS is vertical
_TURNS = {"cube": 45.0, "cuboid": 90.0, "lying": 30.0}  # degrees either way; the others are round
_FLAT = ("cube", "cuboid", "cylinder")
_TOP = ("cube", "cuboid", "cylinder", "sphere", "lying")
_CURVED = ("sphere", "lying")
# Probabilities: the label stable (by level, then height) and, if not, a planar-surface violation.
P_STABLE: dict[str, dict[int, float]] = {"easy": {n: 0.5 for n in range(2, 7)},
                                         "hard": {n: 0.5 for n in range(2, 7)}}
P_PLANAR = {"easy": 0.5, "hard": 0.3}
# Block edges from here on (see the module docstring for what each bounds).
R_EASY = 0.12  # offset half-width, easy
R_HARD = {2: 0.5, 3: 0.4, 4: 0.35, 5: 0.32, 6: 0.3}  # offset half-width by height, hard
VIOLATION_DEPTH = {"easy": (0.12, 0.3), "hard": (0.03, 0.1)}
EASY_MARGIN = 0.12
SAFE_MARGIN = 0.05
HARD_MARGIN = (0.03, 0.1)
VISIBLE_OFFSET = 0.15  # across the image (x): about 4 pixels at 256x256
# The camera looks nearly level (9 degrees down), so an offset in depth (y) hardly shows: y offsets
# are drawn this much narrower than x offsets, and the rule's binding overhangs lie mostly across.
DEPTH_SCALE = 0.5
CONTACT_DEPTH = 0.1
CURVED_INSET = 0.1
# Rolling and spinning friction of spheres and cylinders (Bullet's torque coefficient, block
# edges): without it a sphere or lying cylinder on top of a 5- or 6-block stack rolls off its
# neutral rest on the stack's settling jitter (measured: 4 of 18 lying cylinders turned past the
# 5-degree tolerance); 0.002 stops that and still lets every block placed 0.01 or more off a
# sphere's top fall (as the rule's 0.002-edge resistance would say).
ROLLING_FRICTION = 0.002
_OFFSET_TRIES = 200
_MAX_ATTEMPTS = 1000
_EPS = 1e-9


def check_difficulty(difficulty: Any) -> str | None:
    """``difficulty``: None (both levels, equally often), ``"easy"`` or ``"hard"``.

    Raises:
        ValueError: anything else.
    """
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be None, 'easy' or 'hard', got {difficulty!r}")
    return difficulty


# -- geometry ---------------------------------------------------------------------------------

def _level(lower: tuple[str, Any] | None, upper: tuple[str, Any], com: np.ndarray, top: bool) -> float:
    # The rule's margin of one level (lower None: the floor), see the module docstring.
    flat = ("poly", "disc")
    if lower is None:
        return math.inf if upper[0] in flat else -geom.distance(com, upper)
    if lower[0] in flat and upper[0] in flat:
        margin = geom.region_distance(com, lower, upper)
        return -max(geom.distance(com, lower), geom.distance(com, upper)) if margin is None else margin
    if lower[0] not in flat and upper[0] not in flat:
        return -geom.distance(com, ("point", lower[1] if lower[0] == "point" else lower[1].mean(axis=0)))
    face, curved = (lower, upper) if lower[0] in flat else (upper, lower)
    if curved[0] == "point":
        contact = curved if geom.inner(curved[1], face) >= -_EPS else None
    else:
        seg = geom.clip_segment(curved[1], face)
        contact = None if seg is None else ("segment", seg)
    if contact is None:
        return -max(geom.distance(com, lower), geom.distance(com, upper))
    if top and face is lower:  # a sphere or lying cylinder on top: neutral rest wherever it touches the face
        return geom.inner(com, face)
    return -geom.distance(com, contact)


def level_margins(scene: Scene) -> list[float]:
    """The rule's margin at each level ``1..n-1`` (block ``k`` on block ``k - 1``), block edges, and
    first the floor's when the bottom block is a sphere or lying cylinder (see the module docstring).

    Raises:
        ValueError: fewer than 2 blocks, or a cylinder neither upright nor on its side.
    """
    blocks = scene.cubes
    if len(blocks) < 2:
        raise ValueError(f"the stability rule needs a stack of at least 2 blocks, got {len(blocks)}")
    masses = np.array([volume(b) for b in blocks])
    centres = np.array([(b.x, b.y) for b in blocks])
    sets = [contact_set(b) for b in blocks]
    out = []
    for k in range(len(blocks)):
        com = masses[k:] @ centres[k:] / masses[k:].sum()
        margin = _level(sets[k - 1] if k else None, sets[k], com, k == len(blocks) - 1)
        if math.isfinite(margin):
            out.append(float(margin))
    return out


def com_margin(scene: Scene) -> float:
    """Signed margin of the stability rule (smallest level's), block edges: positive, it stands."""
    return min(level_margins(scene))


def difficulty_level(margin: float) -> str:
    """``"easy"`` when the rule's margin is at least :data:`EASY_MARGIN` less 0.01 from its threshold, else
    ``"hard"``: the generator's easy stacks lie at least ``EASY_MARGIN`` away, its hard ones within 0.1."""
    return "easy" if abs(margin) >= EASY_MARGIN - 0.01 else "hard"


# -- the generator ----------------------------------------------------------------------------

def _block(kind: str, dims: tuple[float, ...], turn: float, x: float, y: float, bottom: float,
           colour: tuple[int, int, int]) -> Cube:
    if kind == "cube":
        e = dims[0]
        return Cube(x, y, bottom + e / 2, e, colour, yaw_quaternion(turn))
    if kind == "cuboid":
        ext = (dims[0], dims[1], dims[2])
        return Cube(x, y, bottom + ext[2] / 2, max(ext), colour, yaw_quaternion(turn), "cuboid", ext)
    if kind == "cylinder":
        d, h = dims
        return Cube(x, y, bottom + h / 2, max(d, h), colour, IDENTITY, "cylinder", (d, d, h))
    if kind == "sphere":
        d = dims[0]
        return Cube(x, y, bottom + d / 2, d, colour, IDENTITY, "sphere", (d, d, d))
    d, length = dims
    turned = quaternion_product(yaw_quaternion(turn), ON_SIDE)
    return Cube(x, y, bottom + d / 2, max(d, length), colour, turned, "cylinder", (d, d, length))


def _slide(kinds, dims, turns, bottoms, masses, xy, j, direction, margin) -> np.ndarray | None:
    # The shift t * direction of blocks j.. (t in [0, 2] edges, by bisection) that puts level j's margin at
    # `margin`, or None if 2 edges do not reach it.
    def level_at(t: float) -> float:
        moved = xy[j:] + t * direction
        lower = _block(kinds[j - 1], dims[j - 1], turns[j - 1], *xy[j - 1], bottoms[j - 1], (0, 0, 0))
        upper = _block(kinds[j], dims[j], turns[j], *moved[0], bottoms[j], (0, 0, 0))
        com = masses[j:] @ moved / masses[j:].sum()
        return _level(contact_set(lower), contact_set(upper), com, j == len(kinds) - 1)

    lo, hi = 0.0, 2.0
    if level_at(hi) > margin:
        return None
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if level_at(mid) > margin else (lo, mid)
    return hi * direction


def _rests(blocks: tuple[Cube, ...], sets: list[tuple[str, Any]]) -> bool:
    # Every block visibly rests on the one below (see the module docstring).
    for k in range(1, len(blocks)):
        flat = [sets[i][0] in ("poly", "disc") for i in (k - 1, k)]
        if all(flat):
            a, b = contact_set(blocks[k - 1], CONTACT_DEPTH), contact_set(blocks[k], CONTACT_DEPTH)
            if b[0] == "disc" and b[1][1] <= 0:
                return False
            if geom.region_distance(np.array([blocks[k].x, blocks[k].y]), a, b) is None:
                return False
        elif any(flat):
            curved, face = (blocks[k], sets[k - 1]) if flat[0] else (blocks[k - 1], sets[k])
            if geom.inner(np.array([curved.x, curved.y]), face) < CURVED_INSET:
                return False
        else:
            return False
    return True


def _meets(blocks: tuple[Cube, ...], masses: np.ndarray, level: str, violation: str, j: int) -> bool:
    # Whether the drawn stack belongs to its class (see the module docstring); cheap tests first.
    n = len(blocks)
    sets = [contact_set(b) for b in blocks]
    if level == "hard" and violation != "planar":
        if sum(abs(b.x - a.x) >= VISIBLE_OFFSET for a, b in zip(blocks, blocks[1:])) < min(2, n - 1):
            return False
    if not _rests(blocks, sets):
        return False
    centres = np.array([(b.x, b.y) for b in blocks])

    def at(k: int) -> float:
        return _level(sets[k - 1] if k else None, sets[k], masses[k:] @ centres[k:] / masses[k:].sum(), k == n - 1)

    # A curved top block's own margin is its inset, kept at least EASY_MARGIN so that it never binds.
    if sets[-1][0] in ("point", "segment") and sets[-2][0] in ("poly", "disc") and at(n - 1) < EASY_MARGIN:
        return False
    if violation == "com" and level == "easy":
        return all(at(k) >= SAFE_MARGIN for k in range(j + 1, n))
    margins = [at(k) for k in range(n)]
    m = min(margins)
    if violation == "planar":
        # The violation's levels: block j on the curved block, the curved block on its support.
        others = [margins[k] for k in range(n) if k not in (j, j - 1)]
        if others and min(others) < (SAFE_MARGIN if level == "easy" else HARD_MARGIN[0]):
            return False
        return m <= -EASY_MARGIN if level == "easy" else -HARD_MARGIN[1] <= m <= -HARD_MARGIN[0]
    if level == "easy":
        return m >= EASY_MARGIN
    lo, hi = HARD_MARGIN
    return lo <= m <= hi if violation == "none" else -hi <= m <= -lo


def shape_stack(rng: np.random.Generator, height: tuple[int, int] = HEIGHT_LIMITS,
                difficulty: str | None = None) -> Scene:
    """A ``shapestacks`` scene drawn from ``rng`` (the module docstring gives every distribution).

    Args:
        height: ``(min, max)`` blocks in the stack, within :data:`HEIGHT_LIMITS` (ShapeStacks' splits:
            ``(2, 3)`` low, ``(4, 6)`` high).
        difficulty: ``"easy"``, ``"hard"`` or None (each with probability 1/2).

    Returns:
        a :class:`~envs.scenes.Scene` of family ``"shapestacks"``, blocks bottom to top, ``target`` the
        top block (nothing is moved: it names the block whose offset ``Scene.offset`` reports).

    Raises:
        ValueError: ``height`` or ``difficulty`` out of range.
    """
    lo, hi = check_int_range("height", height, *HEIGHT_LIMITS)
    level = check_difficulty(difficulty)
    n = int(rng.integers(lo, hi + 1))
    if level is None:
        level = DIFFICULTIES[int(rng.integers(2))]
    stable = bool(rng.random() < P_STABLE[level][n])
    violation = "none" if stable else ("planar" if rng.random() < P_PLANAR[level] else "com")
    j = 0 if stable else int(rng.integers(1, n))
    names = list(PALETTE)
    colours = [PALETTE[names[i]] for i in rng.choice(len(names), size=n, replace=False)]
    for _ in range(_MAX_ATTEMPTS):
        scene = _attempt(rng, n, level, violation, j, colours)
        if scene is not None:
            return scene
    raise RuntimeError(f"no {level} {violation} stack of {n} blocks in {_MAX_ATTEMPTS} attempts")  # pragma: no cover


def _attempt(rng: np.random.Generator, n: int, level: str, violation: str, j: int,
             colours: list[tuple[int, int, int]]) -> Scene | None:
    # One draw of the blocks, then up to _OFFSET_TRIES draws of their offsets; None if none meets the class.
    kinds = []
    for k in range(n):
        if violation == "planar" and k == j - 1:
            choices = _CURVED
        elif k == n - 1 and k != j and not (level == "hard" and n == 2):
            choices = _TOP
        else:  # a curved top block's margin is its inset (see _meets): the binding levels are flat
            choices = _FLAT
        kinds.append(choices[int(rng.integers(len(choices)))])
    dims = [tuple(float(rng.uniform(*r)) for r in DIMENSIONS[kind]) for kind in kinds]
    turns = [float(rng.uniform(-_TURNS[kind], _TURNS[kind])) if kind in _TURNS else 0.0 for kind in kinds]
    bottoms = np.concatenate([[0.0], np.cumsum([d[_HEIGHT_INDEX[kind]] for kind, d in zip(kinds, dims)])[:-1]])
    masses = np.array([volume(_block(kind, d, 0.0, 0.0, 0.0, 0.0, c)) for kind, d, c in zip(kinds, dims, colours)])
    radius = np.full(n - 1, R_EASY if level == "easy" else R_HARD[n])
    for _ in range(_OFFSET_TRIES):
        steps = rng.uniform(-1.0, 1.0, size=(n - 1, 2)) * radius[:, None] * (1.0, DEPTH_SCALE)
        e = float(rng.uniform(*VIOLATION_DEPTH[level]))
        angle, along = float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(-0.25, 0.25))
        xy = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])
        if violation == "planar":
            # Block j (and all above it) moves so that their centre of mass lies e off the curved top.
            com = masses[j:] @ xy[j:] / masses[j:].sum()
            if kinds[j - 1] == "sphere":
                target = xy[j - 1] + e * np.array([math.cos(angle), math.sin(angle)])
            else:
                t = math.radians(turns[j - 1])
                axis, across = np.array([math.cos(t), math.sin(t)]), np.array([-math.sin(t), math.cos(t)])
                target = xy[j - 1] + math.copysign(e, angle) * across + along * dims[j - 1][1] * axis
            xy[j:] += target - com
        elif violation == "com" and level == "easy":
            # Blocks j.. slide until level j's margin is -e: left or right (the angle's sign), at most
            # 30 degrees off the x axis, since the camera barely sees an overhang in depth (y).
            tilt = (abs(angle) / math.pi - 0.5) * math.pi / 3
            direction = np.array([math.copysign(math.cos(tilt), angle), math.sin(tilt)])
            shift = _slide(kinds, dims, turns, bottoms, masses, xy, j, direction, -e)
            if shift is None:
                continue
            xy[j:] += shift
        blocks = tuple(_block(kinds[k], dims[k], turns[k], float(xy[k, 0]), float(xy[k, 1]), float(bottoms[k]),
                              colours[k]) for k in range(n))
        if _meets(blocks, masses, level, violation, j):
            return Scene(FAMILY, blocks, n - 1)
    return None


class ShapeStacksWorld(World):
    """:class:`envs.physics.World` for ``shapestacks`` scenes: :mod:`envs.stability_towers`' solver
    iterations, and :data:`ROLLING_FRICTION` on spheres and cylinders."""

    def load(self, scene: Scene) -> None:
        """As :meth:`envs.physics.World.load`, then the solver iterations and the rolling friction."""
        super().load(scene)
        c = self.client
        p.setPhysicsEngineParameter(numSolverIterations=SOLVER_ITERATIONS, physicsClientId=c)
        for body, block in zip(self._bodies, scene.cubes):
            if block.shape in ("sphere", "cylinder"):
                p.changeDynamics(body, -1, rollingFriction=ROLLING_FRICTION, spinningFriction=ROLLING_FRICTION,
                                 physicsClientId=c)


def _turn(block: Cube) -> float:
    if kind_of(block) == "lying":
        ax, ay, _ = z_axis(block)
        return math.degrees(math.atan2(ay, ax))
    return yaw_of(block)


def stack_info(scene: Scene) -> dict[str, Any]:
    """The ``info`` keys of a ``shapestacks`` scene (plain floats, strs and lists, JSON-serialisable).

    Returns:
        ``shapes`` (:data:`envs.scenes.SHAPES`, bottom first), ``kinds`` (:func:`kind_of`: ``lying`` for a
        cylinder on its side), ``sizes`` (largest extents) and ``extents`` (``[x, y, z]`` in each block's
        frame), block edges; ``rotations`` (turn about the vertical, degrees: a lying cylinder's axis
        from x); ``offsets`` (``n - 1`` pairs ``[dx, dy]``: block ``k + 1``'s centre from block ``k``'s);
        ``level_margins`` (:func:`level_margins`), ``com_margin`` (their least: positive, the rule says
        it stands), ``difficulty`` (its absolute value), ``difficulty_level`` (:func:`difficulty_level`)
        and ``violation``: ``"planar"`` (a block rests on a sphere or a curved side), ``"com"`` (the rule
        fails otherwise) or ``"none"``.
    """
    blocks = scene.cubes
    margins = level_margins(scene)
    margin = min(margins)
    kinds = [kind_of(b) for b in blocks]
    planar = any(k in _CURVED for k in kinds[:-1])
    return {
        "shapes": [b.shape for b in blocks],
        "kinds": kinds,
        "sizes": [b.size for b in blocks],
        "extents": [list(extents_of(b)) for b in blocks],
        "rotations": [_turn(b) for b in blocks],
        "offsets": [[b.x - a.x, b.y - a.y] for a, b in zip(blocks, blocks[1:])],
        "level_margins": margins,
        "com_margin": margin,
        "difficulty": abs(margin),
        "difficulty_level": difficulty_level(margin),
        "violation": "planar" if planar else ("none" if margin > 0 else "com"),
    }
