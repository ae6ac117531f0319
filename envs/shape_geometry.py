"""The geometry of ``ShapeStacksStability-v0``'s blocks (:mod:`envs.shapestacks`): their kinds,
volumes and contact sets, and the exact intersections of flat sets of the horizontal plane.

A flat set is ``("poly", (k, 2) corners counter-clockwise)`` (convex) or ``("disc", (centre, radius))``;
contacts without area are ``("point", (2,))`` and ``("segment", (2, 2) ends)``. Units: block edges.
Discs are exact here (no polygon): an upright cylinder's footprint is its disc.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .scenes import Cube
from .stability_towers import _segment_distance, signed_distance, yaw_of

__all__ = ["kind_of", "volume", "extents_of", "contact_set", "z_axis", "yaw_quaternion", "quaternion_product",
           "ON_SIDE", "inner", "project", "crossings", "region_distance", "clip_segment", "distance"]

_EPS = 1e-9


def quaternion_product(a, b):
    """The product ``a b`` of two xyzw quaternions (``b``'s turn first, then ``a``'s)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def yaw_quaternion(deg: float) -> tuple[float, float, float, float]:
    """The xyzw quaternion of a turn of ``deg`` degrees about the vertical."""
    half = math.radians(deg) / 2
    return (0.0, 0.0, math.sin(half), math.cos(half))


ON_SIDE = (0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4))  # the block's z axis turned onto x


def z_axis(block: Cube) -> tuple[float, float, float]:
    """The block's own z axis in the world (a cylinder's axis): the third column of its rotation."""
    qx, qy, qz, qw = block.orientation
    return (2 * (qx * qz + qy * qw), 2 * (qy * qz - qx * qw), 1 - 2 * (qx * qx + qy * qy))


def kind_of(block: Cube) -> str:
    """``cube``, ``cuboid``, ``cylinder`` (upright), ``lying`` (a cylinder on its side) or ``sphere``.

    Raises:
        ValueError: a cylinder neither upright nor on its side (the rule covers the generator's poses).
    """
    if block.shape != "cylinder":
        return block.shape
    up = abs(z_axis(block)[2])
    if up > 1 - 1e-6:
        return "cylinder"
    if up < 1e-6:
        return "lying"
    raise ValueError(f"a cylinder must stand upright or lie on its side, got orientation {block.orientation}")


def volume(block: Cube) -> float:
    """The block's volume, block edges cubed: its mass (density 1, as :mod:`envs.physics` builds it)."""
    if block.shape == "cube":
        return block.size ** 3
    ex, ey, ez = block.extents  # type: ignore[misc]
    if block.shape == "cuboid":
        return ex * ey * ez
    if block.shape == "cylinder":
        return math.pi * ex * ex / 4 * ez
    return math.pi / 6 * ex ** 3


def extents_of(block: Cube) -> tuple[float, float, float]:
    """Full x, y, z extents in the block's own frame, block edges (a cube's are its edge thrice)."""
    return (block.size,) * 3 if block.extents is None else block.extents


def contact_set(block: Cube, inset: float = 0.0) -> tuple[str, Any]:
    """Where the block touches a face above or below it, seen from above: ``("poly", (4, 2) corners
    counter-clockwise)`` for a cube or cuboid, ``("disc", (centre, radius))`` for an upright cylinder,
    ``("point", (2,))`` for a sphere, ``("segment", (2, 2) ends)`` for a lying cylinder's line. Flat
    footprints shrink by ``inset`` block edges on every side."""
    kind = kind_of(block)
    centre = np.array([block.x, block.y])
    ex, ey, ez = extents_of(block)
    if kind == "sphere":
        return "point", centre
    if kind == "lying":
        ax, ay, _ = z_axis(block)
        return "segment", np.vstack([centre - ez / 2 * np.array([ax, ay]), centre + ez / 2 * np.array([ax, ay])])
    if kind == "cylinder":
        return "disc", (centre, ex / 2 - inset)
    t = math.radians(yaw_of(block))
    c, s = math.cos(t), math.sin(t)
    hx, hy = ex / 2 - inset, ey / 2 - inset
    return "poly", np.array([(block.x + c * u - s * v, block.y + s * u + c * v)
                             for u, v in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy))])


def inner(q: np.ndarray, piece: tuple[str, Any]) -> float:
    """Signed distance of q from a flat set's boundary: positive inside, minus the distance outside."""
    kind, geo = piece
    if kind == "disc":
        return float(geo[1] - math.hypot(q[0] - geo[0][0], q[1] - geo[0][1]))
    return signed_distance(q, geo)


def project(q: np.ndarray, piece: tuple[str, Any]) -> np.ndarray:
    """The point of a flat set nearest to q (q itself inside)."""
    kind, geo = piece
    if inner(q, piece) >= 0:
        return q
    if kind == "disc":
        d = q - geo[0]
        return geo[0] + geo[1] * d / float(np.hypot(*d))
    best = None
    for i in range(len(geo)):
        a, ab = geo[i], geo[(i + 1) % len(geo)] - geo[i]
        point = a + float(np.clip(np.dot(q - a, ab) / np.dot(ab, ab), 0.0, 1.0)) * ab
        if best is None or np.hypot(*(q - point)) < np.hypot(*(q - best)):
            best = point
    return best


def _edges(piece: tuple[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    geo = piece[1]
    return [(geo[i], geo[(i + 1) % len(geo)]) for i in range(len(geo))]


def _segment_circle(a: np.ndarray, b: np.ndarray, centre: np.ndarray, r: float) -> list[float]:
    """Parameters t of the points a + t (b - a) on the circle, in order (none, one or two)."""
    d, f = b - a, a - centre
    qa, qb, qc = float(d @ d), 2 * float(f @ d), float(f @ f) - r * r
    disc = qb * qb - 4 * qa * qc
    if disc < 0 or qa == 0:
        return []
    root = math.sqrt(disc)
    return [(-qb - root) / (2 * qa), (-qb + root) / (2 * qa)]


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def crossings(a: tuple[str, Any], b: tuple[str, Any]) -> list[np.ndarray]:
    """The points where the boundaries of two flat sets cross."""
    if a[0] == "disc" and b[0] == "disc":
        (c0, r0), (c1, r1) = a[1], b[1]
        d = float(np.hypot(*(c1 - c0)))
        if d == 0 or d > r0 + r1 or d < abs(r0 - r1):
            return []
        along = (r0 * r0 - r1 * r1 + d * d) / (2 * d)
        h = math.sqrt(max(r0 * r0 - along * along, 0.0))
        u = (c1 - c0) / d
        mid = c0 + along * u
        return [mid + h * np.array([-u[1], u[0]]), mid - h * np.array([-u[1], u[0]])]
    if a[0] == "disc":
        a, b = b, a
    out = []
    for p0, p1 in _edges(a):
        if b[0] == "disc":
            out += [p0 + t * (p1 - p0) for t in _segment_circle(p0, p1, *b[1]) if 0 <= t <= 1]
            continue
        for q0, q1 in _edges(b):
            den = _cross(p1 - p0, q1 - q0)
            if abs(den) < 1e-15:
                continue
            t, u = _cross(q0 - p0, q1 - q0) / den, _cross(q0 - p0, p1 - p0) / den
            if 0 <= t <= 1 and 0 <= u <= 1:
                out.append(p0 + t * (p1 - p0))
    return out


def region_distance(q: np.ndarray, a: tuple[str, Any], b: tuple[str, Any]) -> float | None:
    """Exact signed distance of q from the boundary of the intersection of two flat sets (None: empty).

    Inside both, it is the smaller of the two inner distances. Outside, the nearest point of the
    intersection is the nearest point of one set lying in the other, or a crossing of their boundaries.
    """
    da, db = inner(q, a), inner(q, b)
    if da >= 0 and db >= 0:
        return min(da, db)
    candidates = [pa for pa in [project(q, a)] if inner(pa, b) >= -_EPS]
    candidates += [pb for pb in [project(q, b)] if inner(pb, a) >= -_EPS]
    candidates += crossings(a, b)
    if not candidates:
        return None
    return -min(float(np.hypot(*(q - c))) for c in candidates)


def clip_segment(seg: np.ndarray, piece: tuple[str, Any]) -> np.ndarray | None:
    """The part of a segment inside a flat set, or None."""
    a, d = seg[0], seg[1] - seg[0]
    t0, t1 = 0.0, 1.0
    if piece[0] == "disc":
        ts = _segment_circle(seg[0], seg[1], *piece[1])
        if not ts:
            return None
        t0, t1 = max(t0, ts[0]), min(t1, ts[1])
    else:
        for e0, e1 in _edges(piece):  # Cyrus-Beck; the inward normal of a counter-clockwise edge
            normal = np.array([-(e1[1] - e0[1]), e1[0] - e0[0]])
            num, den = float(np.dot(a - e0, normal)), float(np.dot(d, normal))
            if abs(den) < 1e-15:
                if num < 0:
                    return None
            elif den > 0:
                t0 = max(t0, -num / den)
            else:
                t1 = min(t1, -num / den)
    return np.vstack([a + t0 * d, a + t1 * d]) if t0 <= t1 + 1e-12 else None


def distance(q: np.ndarray, piece: tuple[str, Any]) -> float:
    """Distance of q from a set of any kind (flat, point or segment); 0 inside a flat one."""
    kind, geo = piece
    if kind == "point":
        return float(np.hypot(*(q - geo)))
    if kind == "segment":
        return _segment_distance(q, geo[0], geo[1])
    return max(0.0, -inner(q, piece))
