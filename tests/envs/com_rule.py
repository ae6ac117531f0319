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
