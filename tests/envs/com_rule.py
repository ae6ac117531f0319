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


# -- rotated cubes of any edge (TowerStability-v0): written apart from envs.stability_towers --------

def footprint_corners(cube: Cube) -> np.ndarray:
    """``(4, 2)`` corners (x, y) of a cube's footprint, from its quaternion's rotation matrix."""
    qx, qy, qz, qw = cube.orientation
    # The first two columns of the rotation matrix of a unit xyzw quaternion, horizontal parts.
    ex = np.array([1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy + qz * qw)])
    ey = np.array([2 * (qx * qy - qz * qw), 1 - 2 * (qx * qx + qz * qz)])
    h = cube.size / 2
    centre = np.array([cube.x, cube.y])
    return np.array([centre + h * (sx * ex + sy * ey) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def _cross(u, v) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _inside(q: np.ndarray, poly: np.ndarray, eps: float = 1e-12) -> bool:
    n = len(poly)
    return all(_cross(poly[(i + 1) % n] - poly[i], q - poly[i]) >= -eps for i in range(n))


def _hull(points: list[np.ndarray]) -> np.ndarray:
    """Convex hull, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted({(round(float(x), 12), round(float(y), 12)) for x, y in points})
    if len(pts) < 3:
        return np.zeros((0, 2))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and _cross(np.subtract(out[-1], out[-2]), np.subtract(p, out[-2])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]), dtype=float)


def support_region(lower: Cube, upper: Cube) -> np.ndarray:
    """The overlap of two footprints as the hull of the corners of each inside the other and the
    crossings of their edges; ``(0, 2)`` when they do not overlap."""
    a, b = footprint_corners(lower), footprint_corners(upper)
    points = [q for q in a if _inside(q, b)] + [q for q in b if _inside(q, a)]
    for i in range(4):
        p0, p1 = a[i], a[(i + 1) % 4]
        for j in range(4):
            q0, q1 = b[j], b[(j + 1) % 4]
            d = _cross(p1 - p0, q1 - q0)
            if abs(d) < 1e-15:
                continue
            t, u = _cross(q0 - p0, q1 - q0) / d, _cross(q0 - p0, p1 - p0) / d
            if 0 <= t <= 1 and 0 <= u <= 1:
                points.append(p0 + t * (p1 - p0))
    return _hull(points)


def _point_to_polygon(q: np.ndarray, poly: np.ndarray) -> float:
    """Signed distance from the boundary: + inside, - outside."""
    dists = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        t = np.clip(np.dot(q - a, b - a) / np.dot(b - a, b - a), 0, 1)
        dists.append(float(np.linalg.norm(q - (a + t * (b - a)))))
    return min(dists) if _inside(q, poly) else -min(dists)


def com_margin_rotated(scene: Scene) -> float:
    """Signed margin of the recursive COM rule for cubes of any edge turned about the vertical.

    For every level k >= 1 the centre of mass of cubes k.. (masses edge**3) must lie inside
    the overlap of the footprints of cubes k - 1 and k. Returns the smallest signed distance
    of that centre of mass from its region's boundary (positive: stable), block edges; a level
    without overlap gives -inf.
    """
    cubes = scene.cubes
    m = np.array([c.size ** 3 for c in cubes])
    xy = np.array([[c.x, c.y] for c in cubes])
    margin = np.inf
    for k in range(1, len(cubes)):
        region = support_region(cubes[k - 1], cubes[k])
        com = (m[k:, None] * xy[k:]).sum(0) / m[k:].sum()
        margin = min(margin, _point_to_polygon(com, region) if len(region) else -np.inf)
    return float(margin)


# -- pyramids (PyramidCounterfactual-v0): written apart from envs.pyramids -------------------------

def face_contacts(cubes) -> list[tuple[int, int | None, float, float, float]]:
    """``(upper, lower or None for the floor, centre x, half-length, height)`` of every patch where a
    cube's bottom face lies on a top face below (upright cubes in the x-z plane)."""
    found = []
    for i, c in enumerate(cubes):
        bottom = c.z - c.size / 2
        if abs(bottom) < 1e-7:
            found.append((i, None, c.x, c.size / 2, 0.0))
            continue
        for j, d in enumerate(cubes):
            if j != i and abs(d.z + d.size / 2 - bottom) < 1e-7:
                lo, hi = max(c.x - c.size / 2, d.x - d.size / 2), min(c.x + c.size / 2, d.x + d.size / 2)
                if hi - lo > 1e-9:
                    found.append((i, j, (lo + hi) / 2, (hi - lo) / 2, bottom))
    return found


def holds(cubes, shrink: float = 0.0, mu: float = 0.3) -> bool:
    """Whether ``cubes`` can stand in static equilibrium with every patch shrunk by ``shrink`` at each end.

    Each patch carries a resultant: a normal force ``N >= 0``, a friction force ``|T| <= mu N``
    and a moment about the patch centre ``|M| <= (half-length - shrink) N`` (the pressure's
    resultant lies inside the shrunk patch); a patch shorter than ``2 shrink`` carries nothing.
    Every cube's three equations (x, z and the moment about its centre) balance its weight
    ``size**3``. Solved with scipy's HiGHS (``scipy.optimize.linprog``).
    """
    from scipy.optimize import linprog

    patches = [q for q in face_contacts(cubes) if q[3] - shrink >= 0]
    if not patches:
        return False
    n, k = len(cubes), len(patches)
    eq = np.zeros((3 * n, 3 * k))
    weight = np.zeros(3 * n)
    weight[1::3] = [c.size ** 3 for c in cubes]
    ub = np.zeros((4 * k, 3 * k))
    for p, (upper, lower, xc, half, z) in enumerate(patches):
        big_n, t, m = 3 * p, 3 * p + 1, 3 * p + 2
        for b, sign in ((upper, 1.0), (lower, -1.0)):
            if b is None:
                continue
            c = cubes[b]
            eq[3 * b, t] += sign
            eq[3 * b + 1, big_n] += sign
            eq[3 * b + 2, big_n] += sign * (xc - c.x)
            eq[3 * b + 2, t] -= sign * (z - c.z)
            eq[3 * b + 2, m] += sign
        lever = half - shrink
        ub[4 * p, [t, big_n]] = 1.0, -mu
        ub[4 * p + 1, [t, big_n]] = -1.0, -mu
        ub[4 * p + 2, [m, big_n]] = 1.0, -lever
        ub[4 * p + 3, [m, big_n]] = -1.0, -lever
    bounds = [(0, None), (None, None), (None, None)] * k
    res = linprog(np.zeros(3 * k), A_ub=ub, b_ub=np.zeros(4 * k), A_eq=eq, b_eq=weight, bounds=bounds,
                  method="highs")
    return res.status == 0


def pyramid_without_red(scene: Scene) -> list[Cube]:
    """The cubes the counterfactual question leaves: every one but the red cube (``scene.target``)."""
    return [c for i, c in enumerate(scene.cubes) if i != scene.target]


# -- ShapeStacksStability-v0's blocks (cubes, cuboids, cylinders, spheres): written apart from envs.shapestacks --
# Discs are regular 256-gons here (at most 4e-5 edges inside the disc); overlaps are hulls of corners and
# crossings as above; poses are read through full rotation matrices.

_RING = 256


def _matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def block_set(block: Cube) -> tuple[str, np.ndarray]:
    """Where a block touches a face above or below: ("polygon", corners), ("point", (1, 2)) or ("segment", (2, 2))."""
    r = _matrix(block.orientation)
    e = block.extents if block.extents is not None else (block.size,) * 3
    c = np.array([block.x, block.y])
    if block.shape == "sphere":
        return "point", c[None]
    if block.shape == "cylinder":
        if abs(r[2, 2]) > 0.5:
            a = np.linspace(0, 2 * np.pi, _RING, endpoint=False)
            return "polygon", c + e[0] / 2 * np.column_stack([np.cos(a), np.sin(a)])
        return "segment", np.array([c - e[2] / 2 * r[:2, 2], c + e[2] / 2 * r[:2, 2]])
    pts = [c + sx * e[0] / 2 * r[:2, 0] + sy * e[1] / 2 * r[:2, 1] for sx in (-1, 1) for sy in (-1, 1)]
    return "polygon", _hull(pts)


def _inside_all(points: np.ndarray, poly: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    edge = np.roll(poly, -1, axis=0) - poly
    rel = points[:, None, :] - poly[None, :, :]
    cross = edge[None, :, 0] * rel[:, :, 1] - edge[None, :, 1] * rel[:, :, 0]
    return (cross >= -eps).all(axis=1)


def _edge_crossings(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Crossing points of the edges of two closed polylines (vectorised over all edge pairs)."""
    p0, p1 = a, np.roll(a, -1, axis=0)
    q0, q1 = b, np.roll(b, -1, axis=0)
    r, s = (p1 - p0)[:, None, :], (q1 - q0)[None, :, :]
    qp = q0[None, :, :] - p0[:, None, :]
    den = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / den
        u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / den
        ok = (np.abs(den) > 1e-15) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
        return (p0[:, None, :] + t[..., None] * r)[ok]


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pts = list(a[_inside_all(a, b)]) + list(b[_inside_all(b, a)]) + list(_edge_crossings(a, b))
    return _hull(pts) if len(pts) >= 3 else np.zeros((0, 2))


def _signed(q: np.ndarray, poly: np.ndarray) -> float:
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((q - a) * ab).sum(1) / (ab * ab).sum(1), 0, 1)
    d = float(np.min(np.hypot(*(q - (a + t[:, None] * ab)).T)))
    return d if _inside_all(q[None], poly)[0] else -d


def _set_distance(q: np.ndarray, kind: str, geo: np.ndarray) -> float:
    if kind == "polygon":
        return max(0.0, -_signed(q, geo))
    if kind == "point":
        return float(np.hypot(*(q - geo[0])))
    a, b = geo
    t = np.clip(np.dot(q - a, b - a) / np.dot(b - a, b - a), 0, 1)
    return float(np.hypot(*(q - a - t * (b - a))))


def _segment_in(seg: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """The part of a segment inside a convex polygon, (0, 2) if none: extreme points along it."""
    pts = list(seg[_inside_all(seg, poly)]) + list(_edge_crossings(np.vstack([seg, seg[::-1]]), poly))
    if not pts:
        return np.zeros((0, 2))
    d = seg[1] - seg[0]
    along = [float(np.dot(p_ - seg[0], d)) for p_ in pts]
    return np.array([pts[int(np.argmin(along))], pts[int(np.argmax(along))]])


def shape_stack_margin(scene: Scene) -> float:
    """Signed margin of the ShapeStacks stability rule (envs.shapestacks' docstring), block edges.

    Level k (block k on k - 1): flat on flat, the centre of mass of blocks k.. must lie in the overlap
    of the two footprints (signed distance from its boundary); a sphere (point) or lying cylinder
    (line) touching a flat face: minus the distance of that centre of mass from the contact, except
    a curved top block, whose margin is its centre's signed distance inside the face below; blocks
    that do not touch: minus the larger distance from the two sets. The floor counts only under a
    sphere or lying cylinder. Masses are volumes.
    """
    blocks = scene.cubes
    e = [b.extents if b.extents is not None else (b.size,) * 3 for b in blocks]
    volume = {"cube": lambda v: v[0] ** 3, "cuboid": lambda v: v[0] * v[1] * v[2],
              "cylinder": lambda v: np.pi * v[0] ** 2 / 4 * v[2], "sphere": lambda v: np.pi * v[0] ** 3 / 6}
    m = np.array([volume[b.shape](v) for b, v in zip(blocks, e)])
    xy = np.array([[b.x, b.y] for b in blocks])
    sets = [block_set(b) for b in blocks]
    margins = []
    for k in range(len(blocks)):
        com = (m[k:, None] * xy[k:]).sum(0) / m[k:].sum()
        if k == 0:
            if sets[0][0] != "polygon":
                margins.append(-_set_distance(com, *sets[0]))
            continue
        (lk, lg), (uk, ug) = sets[k - 1], sets[k]
        apart = -max(_set_distance(com, lk, lg), _set_distance(com, uk, ug))
        if lk == "polygon" and uk == "polygon":
            region = _overlap(lg, ug)
            margins.append(_signed(com, region) if len(region) else apart)
            continue
        if lk != "polygon" and uk != "polygon":
            margins.append(-float(np.hypot(*(com - lg.mean(0)))))
            continue
        face, (ck, cg) = (lg, (uk, ug)) if lk == "polygon" else (ug, (lk, lg))
        contact = cg if ck == "point" and _inside_all(cg, face, 1e-9)[0] else (
            _segment_in(cg, face) if ck == "segment" else np.zeros((0, 2)))
        if not len(contact):
            margins.append(apart)
        elif k == len(blocks) - 1 and lk == "polygon":
            margins.append(_signed(xy[k], lg))
        else:
            margins.append(-_set_distance(com, "point" if ck == "point" else "segment", contact))
    return float(min(margins))
