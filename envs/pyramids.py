"""``PyramidCounterfactual-v0``'s pyramids (DESIGN.md section 8): the seeded generator and the equilibrium rule.

The causal pyramids of the ICML 2025 study ("Testing the limits of fine-tuning to improve
reasoning in vision language models", section 2.3): a pyramid of blocks with one red block;
the question is whether any other block would fall if the red block were not there. The
truth is the simulation's: the pyramid is loaded without the red block into a
:class:`PyramidWorld` and settled (:func:`counterfactual`); the static-equilibrium rule below
(pure geometry and statics) is its test oracle and gives the episode's ``difficulty``.

Units: block edges (one world unit), the cubes' masses ``size**3``, gravity 1 in the rule.
``x`` runs left to right as seen by the camera, ``z`` up; every block sits at ``y = 0``, upright.

Generator (:func:`pyramid`), every draw from the ``rng`` given, in this order:

* ``n``, the rows, uniform in the ``rows`` range (within :data:`ROWS_LIMITS`, 2-5); row ``k``
  (0 at the bottom) holds ``n - k`` cubes, ``n (n + 1) / 2`` in all (3-15);
* the bottom row: its edge uniform in :data:`SIZE_RANGE` (0.8-1.0), then its ``n - 1`` gaps
  (face to face) each uniform in ``BASE_GAP_RANGES[n]``; the row is centred on ``x = 0``;
* each row ``k >= 1``, bottom up: its edge uniform in :data:`SIZE_RANGE`, its ``n - k - 1`` gaps
  each uniform in :data:`GAP_RANGE` (0.12-0.2) and a shift uniform in ``[-r, r]``,
  ``r = SHIFTS[n]``: the row's centre lies ``shift`` from the centre of the midpoints of the
  pairs below, cube ``j`` resting on cubes ``j`` and ``j + 1`` of row ``k - 1``. A row in which a
  cube overlaps one of its two supporters by less than :data:`CONTACT_MIN` (0.05) is drawn again
  (edge, gaps and shift together), so every cube above the bottom rests on two; after 100 such
  draws the whole pyramid is drawn again from its bottom row (some bottom rows leave no room);
* a pyramid the rule does not let stand with :data:`FULL_MARGIN` (0.05) to spare is drawn again
  from the bottom row (the contacts above make this rare);
* the red cube: its row uniform in ``0 .. n - 2`` (never the top), then its place uniform in the row;
* colours, bottom to top and left to right: each of the other cubes uniform among the colours of
  :data:`COLOURS` (:data:`envs.scenes.PALETTE` less magenta, the hue nearest red) that no cube it
  touches and already coloured (its left neighbour, its supporters) has, so neighbours differ;
  red is the red cube's alone.

Each cube sits on the top face of the ones below (the bottom row on the floor), at rest.

Why two gap ranges: the upper gaps are at least 0.12 so that a cube tipping into the hole
passes the verdict's 5-degree tolerance before it can touch its neighbour (a 1-edge cube's
corner moves 0.087 edges by then); with 0.04-0.12, cubes tipped 4.9 degrees, leaned on their
neighbour and were called standing. The bottom row never tips, so its gaps are free, and they
are the knob of :data:`BASE_GAP_RANGES`: wider bottom gaps leave less of a cube above the hole
over its remaining support and less counterweight above, so more pyramids fall. Five rows need
wider shifts as well (:data:`SHIFTS`): the bottom row's gaps cannot widen further and leave room
for the row above.

:data:`BASE_GAP_RANGES` and :data:`SHIFTS` were tuned by simulation on seeds 10000 on (400-1500
per cell) and then measured out of sample,
over seeds 0-999 of ``PyramidCounterfactual-v0`` with ``rows=(n, n)``
(``python benchmarks/world_stats.py --env PyramidCounterfactual-v0 --seeds 1000``; binomial 95%
intervals about +-0.031); "stands" is the fraction in which no other cube falls (the answer No),
"rule" the fraction the equilibrium rule lets stand:

====  ===========  =====  =============  ============  =======  =====================
rows  bottom gaps  shift  stands (sim.)  Yes (falls)   rule     rule agrees (far/near)
====  ===========  =====  =============  ============  =======  =====================
2     0.01-0.04    0.3    0.468          0.532         0.474    931/931, 63/69
3     0.02-0.10    0.3    0.475          0.525         0.480    911/911, 76/89
4     0.15-0.25    0.3    0.496          0.504         0.494    905/905, 81/95
5     0.25-0.35    0.4    0.526          0.474         0.521    938/940, 51/60
====  ===========  =====  =============  ============  =======  =====================

"far" are the scenes at least 0.02 block edges from the rule's threshold (the tests assert
>= 0.99 there), "near" the others: 3685 of 3687 agree far, 271 of 313 near. The split is by
rows, not by the red cube's row. Over the same seeds the fraction that stands is, by the red
cube's row from the bottom: 3 rows 0.58, 0.37; 4 rows 0.61, 0.53, 0.34; 5 rows 0.62, 0.62, 0.52,
0.31. Low in a pyramid, the cubes the red one carried are held by the weight on their far ends;
just below the top, the top cube stays only if its centre lies over the other supporter.
Resetting costs 10-30 ms for 2 rows and 100-300 ms for 5 on one core (two simulations, the
counterfactual to rest, and the rule's bisection; ``ms/scene`` of the script).

Equilibrium rule (:func:`equilibrium_margin`, :func:`com_margin`). For a cube resting on two
cubes and carrying nothing, it is the centre-of-mass rule: the cube stands iff its centre of
mass lies inside the convex hull of its contact patches with the cubes below that still stand
(an interval of x here). What a cube carries is not simply added on: in a pyramid the cubes
above rest on its neighbours too, and the centre of mass of "the cube and everything above it"
lies far outside an edge cube's support in every standing pyramid. Instead the rule asks
whether contact forces exist that hold every cube at once (static equilibrium of rigid blocks,
the lower-bound theorem of masonry: Heyman 1966; Livesley 1978, "Limit analysis of structures
formed from rigid blocks"; Whiting, Ochsendorf & Durand 2009): at each contact patch a force
per end, inside the Coulomb friction cone (normal part >= 0, tangential at most
:data:`RULE_FRICTION` times it), such that each cube's forces and moments balance its weight.
That is a linear feasibility problem, solved by :func:`_feasible` (the simplex method, phase
one). It finds the counterweight a cantilevered cube gets from the cubes resting on its far
end, and the friction with which those cubes resist its turning: with contact forces alone
(no friction) the rule called 18 of 366 pyramids falling that stood in the simulation (seeds
20000-20399, beyond 0.02 edges; none with friction).

The margin is the signed distance from the threshold in block edges: the largest ``delta`` by
which every contact patch can shrink at both ends (a patch shorter than ``2 delta`` is lost) and
the cubes still stand, or, when they do not stand as they are, minus the smallest ``delta`` by
which every patch must grow. For a single cube on a single support it is the signed distance of
its centre of mass from the support's nearest end, as in :mod:`envs.stability_towers`.

The rule's friction coefficient, :data:`RULE_FRICTION` = 0.3, is the smaller of Bullet's combined
ones (it multiplies the two bodies': cube on floor 0.6 x 0.5 = 0.3, cube on cube 0.6 x 0.6 = 0.36);
on those 400 pyramids 0.3 and 0.36 both agree with the simulation on every scene beyond 0.02 edges.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .bullet import pybullet as p
from .physics import (
    DISPLACEMENT_TOL,
    HORIZON_S,
    REST_SPEED,
    REST_STEPS,
    ROTATION_TOL,
    TIME_STEP,
    Verdict,
    World,
)
from .scenes import PALETTE, RED, Cube, Scene, check_int_range
from .stability_towers import StabilityWorld

__all__ = ["pyramid", "layout", "contacts", "stands", "equilibrium_margin", "com_margin",
           "without_red", "pyramid_info", "counterfactual", "PyramidWorld", "FAMILY", "ROWS_LIMITS", "SIZE_RANGE",
           "BASE_GAP_RANGES", "GAP_RANGE", "COLOURS", "SHIFTS", "CONTACT_MIN", "FULL_MARGIN", "RULE_FRICTION", "MARGIN_CAP"]

FAMILY = "pyramid"
ROWS_LIMITS = (2, 5)
SIZE_RANGE = (0.8, 1.0)  # block edges, one per row
# Rows -> the bottom row's gaps (block edges): the balance knob (the table above).
BASE_GAP_RANGES: dict[int, tuple[float, float]] = {2: (0.01, 0.04), 3: (0.02, 0.1), 4: (0.15, 0.25),
                                                   5: (0.25, 0.35)}
GAP_RANGE = (0.12, 0.2)  # block edges, the rows above the bottom
# The other cubes' colours: the palette less magenta, the hue nearest the red cube's that the question names.
COLOURS = tuple(name for name in PALETTE if name != "magenta")
# Rows -> the half-width of a row's shift (block edges): the second knob, for 5 rows only.
SHIFTS: dict[int, float] = {2: 0.3, 3: 0.3, 4: 0.3, 5: 0.4}
CONTACT_MIN = 0.05  # block edges: the least overlap of a cube with each of its two supporters
FULL_MARGIN = 0.05  # block edges: the rule's least margin of a generated pyramid as shown
RULE_FRICTION = 0.3
MARGIN_CAP = 0.5  # block edges: margins are searched in [-MARGIN_CAP, MARGIN_CAP]
MARGIN_TOL = 1e-4  # block edges: the bisection's resolution
# Draws of one row before the whole pyramid is drawn again (some bottom rows leave no room: wide
# gaps under small cubes), and of whole pyramids before giving up, which would mean a bug, not bad luck.
_ROW_REDRAWS = 100
_MAX_REDRAWS = 1000
_Z_TOL = 1e-6  # block edges: faces this close in height touch
_X_TOL = 1e-9  # block edges: a shorter overlap is a touch, not a contact


def _row(centre: float, size: float, gaps: np.ndarray) -> np.ndarray:
    xs = np.concatenate([[0.0], np.cumsum(size + gaps)])
    return xs - xs.mean() + centre


def _rests_on_both(row: np.ndarray, size: float, below: np.ndarray, below_size: float) -> bool:
    left = below[:-1] + below_size / 2 - (row - size / 2)  # overlap with the left supporter
    right = row + size / 2 - (below[1:] - below_size / 2)
    return bool(np.all(left >= CONTACT_MIN) and np.all(right >= CONTACT_MIN))


def _layout_xs(rng: np.random.Generator, n: int) -> list[tuple[float, np.ndarray]] | None:
    # (edge, centres) per row, bottom first; None when a row does not fit in _ROW_REDRAWS draws.
    size = float(rng.uniform(*SIZE_RANGE))
    rows = [(size, _row(0.0, size, rng.uniform(*BASE_GAP_RANGES[n], size=n - 1)))]
    for k in range(1, n):
        below_size, below = rows[-1]
        mids = (below[:-1] + below[1:]) / 2
        for _ in range(_ROW_REDRAWS):
            size = float(rng.uniform(*SIZE_RANGE))
            gaps = rng.uniform(*GAP_RANGE, size=n - k - 1)
            xs = _row(float(mids.mean() + rng.uniform(-SHIFTS[n], SHIFTS[n])), size, gaps)
            if _rests_on_both(xs, size, below, below_size):
                break
        else:
            return None
        rows.append((size, xs))
    return rows


def _cubes(rows: list[tuple[float, np.ndarray]]) -> list[Cube]:
    cubes, z = [], 0.0
    for k, (size, xs) in enumerate(rows):
        z = size / 2 if k == 0 else z + (rows[k - 1][0] + size) / 2
        cubes += [Cube(float(x), 0.0, float(z), size, RED) for x in xs]
    return cubes


def pyramid(rng: np.random.Generator, rows: tuple[int, int] = ROWS_LIMITS) -> Scene:
    """A ``pyramid`` scene drawn from ``rng`` (the module docstring gives every distribution).

    Returns:
        a :class:`~envs.scenes.Scene` of family ``"pyramid"``: cubes row by row from the bottom,
        each row left to right; ``target`` the red cube (the one the question removes).

    Raises:
        ValueError: ``rows`` is not a pair of ints within [2, 5].
    """
    lo, hi = check_int_range("rows", rows, *ROWS_LIMITS)
    n = int(rng.integers(lo, hi + 1))
    for _ in range(_MAX_REDRAWS):
        rows_xs = _layout_xs(rng, n)
        if rows_xs is not None and stands(cubes := _cubes(rows_xs), FULL_MARGIN):
            break
    else:  # pragma: no cover - see _MAX_REDRAWS
        raise RuntimeError(f"no standing pyramid of {n} rows in {_MAX_REDRAWS} draws")
    starts = [k * n - k * (k - 1) // 2 for k in range(n)]  # index of each row's first cube
    red_row = int(rng.integers(0, n - 1))
    target = starts[red_row] + int(rng.integers(0, n - red_row))
    for k in range(n):
        for j in range(n - k):
            i = starts[k] + j
            if i == target:
                continue
            touching = ([i - 1] if j > 0 else []) + ([starts[k - 1] + j, starts[k - 1] + j + 1] if k else [])
            taken = {cubes[t].color for t in touching}
            free = [name for name in COLOURS if PALETTE[name] not in taken]
            cubes[i] = Cube(cubes[i].x, 0.0, cubes[i].z, cubes[i].size, PALETTE[free[int(rng.integers(len(free)))]])
    return Scene(FAMILY, tuple(cubes), target)


def layout(scene: Scene) -> list[list[int]]:
    """The scene's rows: cube indices grouped by height, bottom row first, each left to right.

    Raises:
        ValueError: the cubes do not form a pyramid (row ``k`` of ``n`` holding ``n - k`` cubes).
    """
    order = sorted(range(len(scene.cubes)), key=lambda i: (scene.cubes[i].z, scene.cubes[i].x))
    rows: list[list[int]] = []
    for i in order:
        if rows and abs(scene.cubes[rows[-1][0]].z - scene.cubes[i].z) < _Z_TOL:
            rows[-1].append(i)
        else:
            rows.append([i])
    if [len(r) for r in rows] != list(range(len(rows), 0, -1)):
        raise ValueError(f"not a pyramid: rows of {[len(r) for r in rows]} cubes, bottom first")
    return rows


def without_red(scene: Scene) -> tuple[Cube, ...]:
    """The scene's cubes less the red one (``scene.target``), in order."""
    return tuple(c for i, c in enumerate(scene.cubes) if i != scene.target)


# -- the equilibrium rule --------------------------------------------------------------------

def contacts(cubes) -> list[tuple[int, int, float, float, float]]:
    """The horizontal contact patches: ``(upper, lower, x0, x1, z)``, ``lower = -1`` for the floor.

    A patch is where a cube's bottom face meets the top face of a cube below (or the floor) in
    the x-z plane: ``[x0, x1]`` at height ``z``, block edges. Side contacts are left out (the
    generator keeps every gap open).
    """
    out = []
    for u, a in enumerate(cubes):
        bottom = a.z - a.size / 2
        if bottom < _Z_TOL:
            out.append((u, -1, a.x - a.size / 2, a.x + a.size / 2, 0.0))
            continue
        for low, b in enumerate(cubes):
            if low == u or abs(b.z + b.size / 2 - bottom) >= _Z_TOL or abs(a.y - b.y) >= (a.size + b.size) / 2:
                continue
            x0, x1 = max(a.x - a.size / 2, b.x - b.size / 2), min(a.x + a.size / 2, b.x + b.size / 2)
            if x1 - x0 > _X_TOL:
                out.append((u, low, x0, x1, bottom))
    return out


def _feasible(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> bool:
    """Whether some ``x >= 0`` solves ``a @ x = b``: phase one of the simplex method (dense tableau,
    Dantzig's rule), minimising the sum of one artificial variable per row."""
    m, n = a.shape
    sign = np.where(b < 0, -1.0, 1.0)
    # A fixed perturbation of the right-hand side breaks the ties of the many zero rows (forces and
    # moments balance to 0), on which Dantzig's rule could cycle; 1e-10 moves no verdict beyond it.
    rhs = sign * b + 1e-10 * (1.0 + np.arange(m)) / m
    t = np.zeros((m + 1, n + m + 1))
    t[:m, :n] = sign[:, None] * a
    t[:m, n:n + m] = np.eye(m)
    t[:m, -1] = rhs
    t[m, :n] = -t[:m, :n].sum(axis=0)
    t[m, -1] = -rhs.sum()
    others = np.ones(m + 1, dtype=bool)
    for _ in range(50 * (m + n)):
        j = int(np.argmin(t[m, :-1]))
        if t[m, j] >= -tol:
            break
        col = t[:m, j]
        ratios = np.where(col > tol, t[:m, -1] / np.where(col > tol, col, 1.0), np.inf)
        r = int(np.argmin(ratios))
        if not math.isfinite(ratios[r]):
            break
        t[r] /= t[r, j]
        others[r] = False
        t[others] -= np.outer(t[others, j], t[r])
        others[r] = True
    else:  # pragma: no cover - Dantzig's rule on a perturbed problem terminates
        raise RuntimeError("the simplex method did not converge")
    return bool(-t[m, -1] <= 1e-7 * max(1.0, float(rhs.sum())))


def stands(cubes, delta: float = 0.0) -> bool:
    """Whether the rule lets ``cubes`` stand with every contact patch shrunk by ``delta`` block edges at
    both ends (grown for ``delta < 0``; a patch shorter than ``2 delta`` is lost)."""
    cubes = tuple(cubes)
    if not cubes:
        return True
    columns = []
    for u, low, x0, x1, z in contacts(cubes):
        if x1 - x0 < 2 * delta:
            continue
        for x in (x0 + delta, x1 - delta):
            for fx in (RULE_FRICTION, -RULE_FRICTION):  # the friction cone's two edges, normal part 1
                col = np.zeros(3 * len(cubes))
                for i, s in ((u, 1.0), (low, -1.0)):  # the force on the upper cube, its reaction below
                    if i >= 0:
                        c = cubes[i]
                        col[3 * i:3 * i + 3] = s * fx, s, s * ((x - c.x) - (z - c.z) * fx)
                columns.append(col)
    if not columns:
        return False
    b = np.zeros(3 * len(cubes))
    b[1::3] = [c.size ** 3 for c in cubes]  # the contact forces carry each cube's weight
    return _feasible(np.array(columns).T, b)


def equilibrium_margin(cubes) -> float:
    """Signed margin of the equilibrium rule for ``cubes``, block edges (the module docstring).

    Positive: the rule says they stand; negative: something falls. Clipped to
    ``[-MARGIN_CAP, MARGIN_CAP]``, resolved to :data:`MARGIN_TOL`.
    """
    cubes = tuple(cubes)
    up = stands(cubes, 0.0)
    lo, hi = (0.0, MARGIN_CAP) if up else (-MARGIN_CAP, 0.0)
    if stands(cubes, lo if not up else hi) == up:
        return MARGIN_CAP if up else -MARGIN_CAP
    while hi - lo > MARGIN_TOL:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stands(cubes, mid) else (lo, mid)
    return (lo + hi) / 2


@functools.lru_cache(maxsize=256)
def com_margin(scene: Scene) -> float:
    """The rule's signed margin for the question: the pyramid without its red cube (cached per scene:
    ``info`` is rebuilt on every judged answer)."""
    return equilibrium_margin(without_red(scene))


def pyramid_info(scene: Scene) -> dict[str, Any]:
    """The ``info`` keys of a ``pyramid`` scene (plain numbers and lists, JSON-serialisable).

    Returns:
        ``rows``; ``red_row`` (0 at the bottom) and ``red_position`` (0 at the left) of the red
        cube; ``sizes`` (every cube's edge, scene order); ``offsets`` (each cube above the bottom
        row, scene order: its x from the midpoint of the two cubes it rests on); ``gaps`` (per
        row, bottom first: the face-to-face gaps, left to right); ``com_margin``
        (:func:`com_margin`, signed: positive, the rule says no other cube falls) and
        ``difficulty`` (its absolute value; small is hard). Block edges throughout.
    """
    rows = layout(scene)
    cubes = scene.cubes
    red_row = next(k for k, row in enumerate(rows) if scene.target in row)
    margin = com_margin(scene)
    return {
        "rows": len(rows),
        "red_row": red_row,
        "red_position": rows[red_row].index(scene.target),
        "sizes": [c.size for c in cubes],
        "offsets": [cubes[i].x - (cubes[below[j]].x + cubes[below[j + 1]].x) / 2
                    for below, row in zip(rows, rows[1:]) for j, i in enumerate(row)],
        "gaps": [[cubes[b].x - cubes[a].x - cubes[a].size for a, b in zip(row, row[1:])] for row in rows],
        "com_margin": margin,
        "difficulty": abs(margin),
    }


# -- the simulation ----------------------------------------------------------------------------

class PyramidWorld(StabilityWorld):
    """:class:`envs.stability_towers.StabilityWorld` (100 solver iterations) with a settle that
    says which cubes moved.

    The table's two disagreements with the rule beyond 0.02 edges (5 rows, seeds 594 and 617) stay
    at 200 and 400 iterations: both sit at the verdict's tolerance, a cube that turned 4.4 degrees
    and came to rest, and one that crept 0.051 edges (the tolerance is 0.05).
    """

    def settle_each(self, horizon_s: float = HORIZON_S) -> tuple[Verdict, list[bool]]:
        """Simulate the loaded scene until everything is at rest or ``horizon_s`` passes.

        Returns:
            the verdict that :meth:`~envs.physics.World.settle` with ``stop_on_motion=False``
            gives, and per cube (load order) whether it moved or turned beyond tolerance.
        """
        if self._scene is None:
            raise RuntimeError("PyramidWorld.settle_each() before load(scene)")
        c = self.client
        start = [p.getBasePositionAndOrientation(b, physicsClientId=c) for b in self._bodies]
        moved = [False] * len(self._bodies)
        disp = rot = 0.0
        quiet = step = 0
        max_steps = int(round(horizon_s / TIME_STEP))
        while step < max_steps and quiet < REST_STEPS:
            step += 1
            p.stepSimulation(physicsClientId=c)
            speed = 0.0
            for i, (body, (pos0, orn0)) in enumerate(zip(self._bodies, start)):
                pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=c)
                d = math.dist(pos, pos0)
                dot = abs(orn[0] * orn0[0] + orn[1] * orn0[1] + orn[2] * orn0[2] + orn[3] * orn0[3])
                r = 2.0 * math.acos(min(1.0, dot))
                disp, rot = max(disp, d), max(rot, r)
                moved[i] = moved[i] or d > DISPLACEMENT_TOL or r > ROTATION_TOL
                lin, ang = p.getBaseVelocity(body, physicsClientId=c)
                speed = max(speed, math.hypot(*lin), math.hypot(*ang))
            quiet = quiet + 1 if speed < REST_SPEED else 0
        fell = any(moved)
        status = "moved" if fell else ("at_rest" if quiet >= REST_STEPS else "horizon")
        return Verdict(not fell, status, step, disp, rot), moved


def counterfactual(world: World, scene: Scene, initial: Verdict) -> tuple[bool, dict[str, Any]]:
    """The question's truth (:attr:`envs.worlds.FamilySpec.question`): load the pyramid without its
    red cube, settle it to rest, and say whether every other cube stayed.

    Returns:
        ``(stands, keys)``: ``keys`` holds ``removed`` (the red cube's index in ``scene.cubes``),
        ``fell`` (indices in ``scene.cubes`` of the cubes that moved or turned beyond the verdict's
        tolerance, ascending) and ``counterfactual_steps`` (simulation steps to rest).
    """
    world.load(Scene(FAMILY, without_red(scene), 0))
    verdict, moved = world.settle_each()
    others = [i for i in range(len(scene.cubes)) if i != scene.target]
    fell = [i for i, m in zip(others, moved) if m]
    return verdict.stable, {"removed": scene.target, "fell": fell, "counterfactual_steps": verdict.steps}
