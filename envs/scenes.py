"""Scenes: what is in the world, and seeded generators of the scene families.

Units: every length is in block edges (the world scale of :mod:`envs.physics`
is one world unit per block edge). ``x`` runs left to right as seen by the
camera, ``z`` up, ``y`` away from the camera. A cube's position is its centre.

Families:

* ``top_block``: a tower of 2-4 cubes on the tower axis ``x = 0``; the top
  cube is displaced left or right by ``offset``, ``|offset|`` uniform in
  [0.05, 0.95), so half the towers are stable by the centre-of-mass rule
  (``|offset| < 0.5``). The answer moves the top cube (``target``).
* ``side_block``: an aligned tower of 1-3 cubes on ``x = 0`` and one red cube
  on the floor to its left or right, its centre ``|offset|`` uniform in
  [1.5, 3.5) block edges from the axis, so a move in [-600, 600] units always
  reaches the tower. The answer moves the red cube (``target``).
* ``build`` (``TowerBuild-v0``): a grey base cube on ``x = 0`` (``target``, index 0,
  never moved) and 2-4 coloured cubes on the floor in four slots beside it
  (centres at ``x = +-1.75`` and ``+-3.35`` block edges, each jittered uniformly by
  up to 0.1), edges drawn uniformly from ``sizes`` (default all 1). Answers lift a
  floor cube by its colour and set it down (:mod:`envs.build`).

* ``stability`` (``TowerStability-v0``): a tower of 2-7 cubes of random edge, turn about
  the vertical, colour and x/y offset; its generator is :func:`envs.stability_towers.stability_tower`.
  Like ``top_block``, every cube is part of the tower and ``target`` is the top one.
* ``shapestacks`` (``ShapeStacksStability-v0``): a stack of 2-6 cubes, cuboids, cylinders and
  spheres (:attr:`Cube.shape`); its generator is :func:`envs.shapestacks.shape_stack`. Every
  block is part of the tower, ``target`` the top one.
* ``pyramid`` (``PyramidCounterfactual-v0``): a pyramid of 2-5 rows, the bottom row as many
  blocks as rows, listed row by row from the bottom, each row left to right; its generator is
  :func:`envs.pyramids.pyramid`. ``target`` is the red block, never on top, the one the
  question removes.

Scenes reached during a multi-step episode (``info["scene_now"]``) hold the poses a
simulation left, so a cube may carry an ``orientation`` (a fallen cube lies turned).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = ["Cube", "Scene", "top_block", "side_block", "tower_build", "PALETTE", "RED", "GREY", "FAMILIES",
           "IDENTITY", "SHAPES", "check_shape", "check_int_range"]

# Distinct saturated colours (RGB, 0-255), far apart in hue so that cubes can
# be told apart by colour; red is reserved for the side-block's moved cube.
RED = (220, 30, 30)
PALETTE: dict[str, tuple[int, int, int]] = {
    "green": (30, 180, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 205, 20),
    "orange": (245, 125, 10),
    "purple": (135, 40, 200),
    "cyan": (20, 190, 210),
    "magenta": (220, 30, 170),
}
# The base cube of TowerBuild-v0: darker than the grey floor, and never a colour an answer names.
GREY = (90, 90, 90)
COLOR_NAMES = {**{v: k for k, v in PALETTE.items()}, RED: "red", GREY: "grey"}
FAMILIES = ("top_block", "side_block", "build", "stability", "shapestacks", "pyramid")
# Families whose every cube is the tower, the target the top one.
_WHOLE_TOWER = ("top_block", "stability", "shapestacks")
IDENTITY = (0.0, 0.0, 0.0, 1.0)  # xyzw quaternion of an upright cube
# Block shapes (Cube.shape): ShapeStacks' (Groth et al. 2018) cuboids, cylinders and spheres, and cubes.
SHAPES = ("cube", "cuboid", "cylinder", "sphere")
BUILD_SLOTS = (-3.35, -1.75, 1.75, 3.35)
BUILD_JITTER = 0.1
BUILD_SIZE_LIMITS = (0.5, 1.2)  # edges larger than 1.2 would make neighbouring slots overlap

TOP_OFFSET_RANGE = (0.05, 0.95)
SIDE_OFFSET_RANGE = (1.5, 3.5)


@dataclass(frozen=True)
class Cube:
    """One block: centre ``(x, y, z)`` and edge ``size`` in block edges, ``color`` RGB 0-255.

    A cube unless ``shape`` says otherwise (:data:`SHAPES`; ``ShapeStacksStability-v0``):
    ``extents`` are then the full x, y and z extents in the block's own frame, block edges
    (``orientation`` turns that frame): a ``cuboid``'s sides, a ``cylinder``'s diameter twice
    and its length along its own z axis (upright when ``orientation`` leaves z vertical, on its
    side when it turns z horizontal), a ``sphere``'s diameter three times. ``size`` is then the
    largest extent, so code that reads ``size`` as a cube's edge sees a bound of the block.
    Density 1 throughout: a block's mass is its volume (a cube's ``size**3``).
    """

    x: float
    y: float
    z: float
    size: float = 1.0
    color: tuple[int, int, int] = RED
    orientation: tuple[float, float, float, float] = IDENTITY
    shape: str = "cube"
    extents: tuple[float, float, float] | None = None

    def overlaps(self, other: Cube, eps: float = 1e-6) -> bool:
        """True when the two cubes, taken as axis-aligned, share volume (touching is not overlapping)."""
        reach = (self.size + other.size) / 2 - eps
        return (
            abs(self.x - other.x) < reach
            and abs(self.y - other.y) < reach
            and abs(self.z - other.z) < reach
        )


@dataclass(frozen=True)
class Scene:
    """A JSON-serialisable scene: ``cubes`` bottom to top, ``target`` the cube an answer moves.

    ``family`` is one of :data:`FAMILIES`. For ``top_block`` every cube is part of
    the tower and ``target`` is the top one; for ``side_block`` the tower is every
    cube but ``target``, the cube on the floor (at the start; in a ``sequential``
    episode wherever the last move left it). For ``build``, ``target`` is the base
    cube (index 0) and :mod:`envs.build` reads the rest.
    """

    family: str
    cubes: tuple[Cube, ...]
    target: int

    @property
    def tower(self) -> tuple[Cube, ...]:
        """The tower's cubes, bottom to top (for ``top_block``, including the top cube)."""
        if self.family in _WHOLE_TOWER:
            return self.cubes
        return tuple(c for i, c in enumerate(self.cubes) if i != self.target)

    @property
    def n_blocks(self) -> int:
        """Cubes in the tower (the side-block's floor cube is not counted)."""
        return len(self.tower)

    @property
    def top(self) -> Cube:
        """The tower's highest cube (a tower the last move toppled need not be in list order)."""
        return max(self.tower, key=lambda c: c.z)

    @property
    def axis(self) -> float:
        """x of the support the target cube should be centred on, block edges."""
        if self.family in _WHOLE_TOWER:
            return self.cubes[self.target - 1].x
        return self.top.x

    @property
    def offset(self) -> float:
        """The target cube's x offset from :attr:`axis`, block edges (negative: left)."""
        return self.cubes[self.target].x - self.axis

    @property
    def goal_z(self) -> float:
        """z of the target cube's centre when it sits on top of the tower, block edges."""
        if self.family in _WHOLE_TOWER:
            return self.cubes[self.target].z
        top = self.top
        return top.z + (top.size + self.cubes[self.target].size) / 2

    def with_target_at(self, x: float, z: float) -> Scene:
        """A copy with the target cube's centre moved to ``(x, z)``, set down upright."""
        cubes = list(self.cubes)
        cubes[self.target] = replace(cubes[self.target], x=float(x), z=float(z), orientation=IDENTITY)
        return replace(self, cubes=tuple(cubes))

    def resting_z(self, x: float, below: float = math.inf, tol: float = 1e-9) -> float:
        """Centre z at which the target cube comes to rest at ``x`` when lowered from ``below``.

        It rests on the highest top face of the other cubes that it overlaps in x
        (and y) and that lies no higher than ``below`` minus half its size (plus
        ``tol`` block edges), or on the floor (z = size / 2).
        """
        moved = self.cubes[self.target]
        half = moved.size / 2
        floor = half
        for i, c in enumerate(self.cubes):
            if i == self.target:
                continue
            reach = (c.size + moved.size) / 2 - 1e-6
            top = c.z + c.size / 2
            if abs(c.x - x) < reach and abs(c.y - moved.y) < reach and top <= below - half + tol:
                floor = max(floor, top + half)
        return floor

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` inverts it exactly."""
        cubes = []
        for c in self.cubes:
            d = {**asdict(c), "color": list(c.color), "orientation": list(c.orientation)}
            if c.orientation == IDENTITY:  # upright cubes (every initial scene) keep the short form
                del d["orientation"]
            # Cubes keep the form they had before other shapes existed (the other ids' infos, bit for bit).
            if c.shape == "cube":
                del d["shape"]
            if c.extents is None:
                del d["extents"]
            else:
                d["extents"] = list(c.extents)
            cubes.append(d)
        return {"family": self.family, "target": self.target, "cubes": cubes}

    @classmethod
    def from_dict(cls, data: Any) -> Scene:
        """Rebuild a scene from :meth:`to_dict` output.

        Raises:
            ValueError: ``data`` is not a scene dict (names the bad key or value).
        """
        if isinstance(data, Scene):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"a scene must be a dict from info['scene'], got {type(data).__name__}")
        missing = {"family", "target", "cubes"} - set(data)
        if missing:
            raise ValueError(f"scene dict lacks keys {sorted(missing)}; pass info['scene'] unchanged")
        if data["family"] not in FAMILIES:
            raise ValueError(f"scene family must be one of {FAMILIES}, got {data['family']!r}")
        try:
            cubes = tuple(
                Cube(float(c["x"]), float(c["y"]), float(c["z"]), float(c["size"]),
                     tuple(int(v) for v in c["color"]),  # type: ignore[arg-type]
                     tuple(float(v) for v in c.get("orientation", IDENTITY)),  # type: ignore[arg-type]
                     str(c.get("shape", "cube")),
                     None if c.get("extents") is None else tuple(float(v) for v in c["extents"]))  # type: ignore[arg-type]
                for c in data["cubes"]
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"bad cube in scene: {exc!r}; each cube needs x, y, z, size, color") from exc
        if any(len(c.orientation) != 4 for c in cubes):
            raise ValueError("a cube's orientation must be an xyzw quaternion of 4 numbers")
        for c in cubes:
            check_shape(c)
        target = int(data["target"])
        if not 0 <= target < len(cubes) or (data["family"] in _WHOLE_TOWER and target == 0) or (
                data["family"] == "build" and target != 0):
            raise ValueError(f"scene target {target} does not name a movable cube of {len(cubes)}")
        return cls(data["family"], cubes, target)


def check_shape(cube: Cube) -> None:
    """Check a block's ``shape`` and ``extents`` (see :class:`Cube`).

    Raises:
        ValueError: an unknown shape; a cube with extents; another shape without three positive
            extents, ``size`` not their largest, a cylinder whose x and y extents differ, or a
            sphere whose three differ.
    """
    if cube.shape not in SHAPES:
        raise ValueError(f"a block's shape must be one of {SHAPES}, got {cube.shape!r}")
    if cube.shape == "cube":
        if cube.extents is not None:
            raise ValueError(f"a cube has no extents (its edge is size); got extents={cube.extents}")
        return
    e = cube.extents
    if e is None or len(e) != 3 or not all(v > 0 for v in e):
        raise ValueError(f"a {cube.shape} needs three positive extents (block edges), got {e!r}")
    if abs(cube.size - max(e)) > 1e-9:
        raise ValueError(f"a {cube.shape}'s size must be its largest extent {max(e)}, got {cube.size}")
    if cube.shape == "cylinder" and abs(e[0] - e[1]) > 1e-9:
        raise ValueError(f"a cylinder's x and y extents are its diameter and must be equal, got {e}")
    if cube.shape == "sphere" and max(e) - min(e) > 1e-9:
        raise ValueError(f"a sphere's three extents are its diameter and must be equal, got {e}")


def check_int_range(name: str, value: Any, lo: int, hi: int) -> tuple[int, int]:
    """``value`` as a ``(min, max)`` pair of ints with ``lo <= min <= max <= hi`` (a world's
    ``n_blocks``, ``rows`` or ``height`` kwarg, named ``name`` in the error).

    Raises:
        ValueError: not such a pair (names the value and the bounds).
    """
    message = f"{name} must be a (min, max) pair of ints with {lo} <= min <= max <= {hi}, got {value!r}"
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (a, b)) \
            or not lo <= a <= b <= hi:
        raise ValueError(message)
    return int(a), int(b)


def _check_range(n_blocks: tuple[int, int], lo: int, hi: int) -> None:
    a, b = n_blocks
    if not (lo <= a <= b <= hi):
        raise ValueError(f"n_blocks must satisfy {lo} <= min <= max <= {hi}, got {n_blocks}")


def _colors(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    names = list(PALETTE)
    return [PALETTE[names[i]] for i in rng.choice(len(names), size=n, replace=False)]


def top_block(rng: np.random.Generator, n_blocks: tuple[int, int] = (2, 4)) -> Scene:
    """A ``top_block`` scene drawn from ``rng`` (see the module docstring).

    Raises:
        ValueError: ``n_blocks`` is not a range within [2, 6].
    """
    _check_range(n_blocks, 2, 6)
    n = int(rng.integers(n_blocks[0], n_blocks[1] + 1))
    colors = _colors(rng, n)
    magnitude = float(rng.uniform(*TOP_OFFSET_RANGE))
    offset = magnitude if rng.random() < 0.5 else -magnitude
    cubes = tuple(
        Cube(offset if i == n - 1 else 0.0, 0.0, i + 0.5, 1.0, colors[i]) for i in range(n)
    )
    return Scene("top_block", cubes, n - 1)


def side_block(rng: np.random.Generator, n_blocks: tuple[int, int] = (1, 3)) -> Scene:
    """A ``side_block`` scene drawn from ``rng`` (see the module docstring).

    Raises:
        ValueError: ``n_blocks`` is not a range within [1, 5].
    """
    _check_range(n_blocks, 1, 5)
    n = int(rng.integers(n_blocks[0], n_blocks[1] + 1))
    colors = _colors(rng, n)
    magnitude = float(rng.uniform(*SIDE_OFFSET_RANGE))
    side = magnitude if rng.random() < 0.5 else -magnitude
    cubes = tuple(Cube(0.0, 0.0, i + 0.5, 1.0, colors[i]) for i in range(n))
    return Scene("side_block", cubes + (Cube(side, 0.0, 0.5, 1.0, RED),), n)


def tower_build(rng: np.random.Generator, n_blocks: tuple[int, int] = (2, 4),
                sizes: tuple[float, float] = (1.0, 1.0)) -> Scene:
    """A ``build`` scene drawn from ``rng``: the grey base cube and ``n`` coloured floor cubes.

    Args:
        n_blocks: ``(min, max)`` coloured cubes, within [1, 4] (one per slot).
        sizes: ``(min, max)`` edge of the coloured cubes in block edges, within
            :data:`BUILD_SIZE_LIMITS`; the base cube is always 1.

    Raises:
        ValueError: ``n_blocks`` or ``sizes`` out of range.
    """
    _check_range(n_blocks, 1, len(BUILD_SLOTS))
    lo, hi = (float(v) for v in sizes)
    if not BUILD_SIZE_LIMITS[0] <= lo <= hi <= BUILD_SIZE_LIMITS[1]:
        raise ValueError(f"sizes must satisfy {BUILD_SIZE_LIMITS[0]} <= min <= max <= {BUILD_SIZE_LIMITS[1]} "
                         f"block edges, got {sizes}")
    n = int(rng.integers(n_blocks[0], n_blocks[1] + 1))
    colors = [PALETTE[k] for k in PALETTE] + [RED]
    chosen = [colors[i] for i in rng.choice(len(colors), size=n, replace=False)]
    slots = sorted(rng.choice(len(BUILD_SLOTS), size=n, replace=False))
    cubes = [Cube(0.0, 0.0, 0.5, 1.0, GREY)]
    for slot, color in zip(slots, chosen):
        size = float(rng.uniform(lo, hi)) if hi > lo else lo
        x = BUILD_SLOTS[slot] + float(rng.uniform(-BUILD_JITTER, BUILD_JITTER))
        cubes.append(Cube(x, 0.0, size / 2, size, color))
    return Scene("build", tuple(cubes), 0)
