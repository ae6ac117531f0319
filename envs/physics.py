"""The physics core: a scene in pybullet (DIRECT mode), simulated to a verdict.

World scale: one world unit (metre) per block edge, so every cube is a 1 m
cube and ``g = 9.81`` m/s^2. Bullet keeps a fixed collision margin (about
0.04 world units) around convex shapes; at small scales that margin is a large
fraction of a cube and rounds the edges a top cube tips over, and contacts
jitter. Measured: with unit cubes the simulated threshold of
a displaced top cube lies between 0.495 and 0.498 block edges, and stable
towers meet the rest criterion within about 55 steps; with 20 cm cubes a 0.49 offset never
comes to rest within 10 simulated seconds, and with 5 cm cubes no offset from
0.45 up does.

Verdict: the scene is simulated with a fixed step of 1/240 s until it is
certain. It is *unstable* as soon as any cube has moved more than
``DISPLACEMENT_TOL`` block edges or turned more than ``ROTATION_TOL`` from its
initial pose; it is *stable* once every cube has been at rest (linear speed
below ``REST_SPEED`` edges/s and angular speed below ``REST_SPEED`` rad/s) for
``REST_STEPS`` consecutive steps, or when ``HORIZON_S`` passes without motion
beyond tolerance. A tower that will fall keeps accelerating from its first
step (an inverted pendulum), so it never meets the rest criterion; a stable
tower is quiet after 15-45 steps. Stopping as soon as the verdict is certain
is what makes an episode cheap.

Blocks of other shapes (:attr:`envs.scenes.Cube.shape`: cuboids, cylinders, spheres) are
Bullet's box, cylinder and sphere primitives of the block's extents, mass their volume; cubes
are built exactly as before those shapes existed.

Cubes are placed at their resting height with zero velocity: a cube dropped
from a gap lands with momentum, which can topple a tower the centre-of-mass
rule calls stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .bullet import BulletClient
from .bullet import pybullet as p
from .render import add_room, render_rgb
from .scenes import Cube, Scene

__all__ = ["World", "Verdict", "WORLD_UNITS_PER_EDGE", "TIME_STEP"]

WORLD_UNITS_PER_EDGE = 1.0
TIME_STEP = 1.0 / 240.0
GRAVITY = 9.81
FRICTION = 0.6
DISPLACEMENT_TOL = 0.05  # block edges
ROTATION_TOL = math.radians(5.0)
REST_SPEED = 1e-3
REST_STEPS = 8
HORIZON_S = 4.0


@dataclass(frozen=True)
class Verdict:
    """Outcome of simulating a scene.

    Attributes:
        stable: no cube moved or turned beyond tolerance.
        status: ``"at_rest"`` (stable, came to rest), ``"moved"`` (unstable: a
            cube passed a tolerance) or ``"horizon"`` (stable: the time limit
            passed with every cube within tolerance).
        steps: simulation steps taken (of ``TIME_STEP`` seconds each).
        max_displacement: largest cube displacement, block edges.
        max_rotation: largest cube rotation, radians.
    """

    stable: bool
    status: str
    steps: int
    max_displacement: float
    max_rotation: float


def _shape(client: int, block: Cube, scale: float) -> tuple[int, int, float]:
    """Collision shape, visual shape and mass (its volume) of a block that is not a cube.

    Cylinders are Bullet's cylinder primitive (its axis the block's own z), spheres its sphere:
    curved surfaces roll, where a polygonal mesh would rest on a facet.
    """
    ex, ey, ez = (v * scale for v in block.extents)  # type: ignore[misc]
    rgba = [v / 255 for v in block.color] + [1.0]
    if block.shape == "cuboid":
        half = [ex / 2, ey / 2, ez / 2]
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=client)
        return col, vis, ex * ey * ez
    if block.shape == "cylinder":
        col = p.createCollisionShape(p.GEOM_CYLINDER, radius=ex / 2, height=ez, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=ex / 2, length=ez, rgbaColor=rgba,
                                  physicsClientId=client)
        return col, vis, math.pi * ex * ex / 4 * ez
    if block.shape == "sphere":
        col = p.createCollisionShape(p.GEOM_SPHERE, radius=ex / 2, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=ex / 2, rgbaColor=rgba, physicsClientId=client)
        return col, vis, math.pi / 6 * ex**3
    raise ValueError(f"no pybullet shape for a block of shape {block.shape!r}")


class World(BulletClient):
    """One pybullet DIRECT client holding the floor and the cubes of one scene.

    Not thread-safe; one per environment. Pickling keeps the loaded scene and
    reconnects a fresh client on unpickling (simulated poses are not kept).
    """

    def __init__(self) -> None:
        self._client: int | None = None
        self._scene: Scene | None = None
        self._bodies: list[int] = []

    # -- lifecycle -------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"scene": self._scene}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        if state["scene"] is not None:
            self.load(state["scene"])

    # -- building --------------------------------------------------------
    def load(self, scene: Scene) -> None:
        """Empty the world and build ``scene``: the room, then each cube at rest."""
        c = self.client
        # A fresh simulation each time: Bullet's contact caches and pair order
        # would otherwise carry over between episodes and break determinism.
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=c)
        p.setPhysicsEngineParameter(
            fixedTimeStep=TIME_STEP, deterministicOverlappingPairs=1, physicsClientId=c
        )
        add_room(c, visible=False)
        s = WORLD_UNITS_PER_EDGE
        self._bodies = []
        for cube in scene.cubes:
            if cube.shape == "cube":
                half = [cube.size * s / 2] * 3
                col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
                vis = p.createVisualShape(
                    p.GEOM_BOX, halfExtents=half,
                    rgbaColor=[v / 255 for v in cube.color] + [1.0], physicsClientId=c,
                )
                mass = cube.size**3
            else:
                col, vis, mass = _shape(c, cube, s)
            body = p.createMultiBody(
                baseMass=mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                basePosition=[cube.x * s, cube.y * s, cube.z * s],
                baseOrientation=list(cube.orientation), physicsClientId=c,
            )
            p.changeDynamics(body, -1, lateralFriction=FRICTION, restitution=0.0,
                             physicsClientId=c)
            self._bodies.append(body)
        self._scene = scene

    # -- reading ---------------------------------------------------------
    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Cube centres ``(n, 3)`` in block edges and orientations ``(n, 4)`` xyzw quaternions."""
        c = self.client
        got = [p.getBasePositionAndOrientation(b, physicsClientId=c) for b in self._bodies]
        pos = np.array([g[0] for g in got], dtype=np.float64) / WORLD_UNITS_PER_EDGE
        orn = np.array([g[1] for g in got], dtype=np.float64)
        return pos, orn

    def scene_now(self) -> Scene:
        """The loaded scene with every cube at its simulated pose now (position and orientation).

        Raises:
            RuntimeError: nothing is loaded.
        """
        if self._scene is None:
            raise RuntimeError("World.scene_now() before World.load(scene)")
        pos, orn = self.poses()
        cubes = tuple(replace(c, x=float(p_[0]), y=float(p_[1]), z=float(p_[2]),
                              orientation=tuple(float(v) for v in o))
                      for c, p_, o in zip(self._scene.cubes, pos, orn))
        return replace(self._scene, cubes=cubes)

    def settle(self, horizon_s: float = HORIZON_S, stop_on_motion: bool = True) -> Verdict:
        """Simulate the loaded scene until its verdict is certain (see the module docstring).

        With ``stop_on_motion=False`` it keeps simulating a falling scene until
        everything is at rest or ``horizon_s`` passes (for rendering the result).
        """
        if self._scene is None:
            raise RuntimeError("World.settle() before World.load(scene)")
        c, s = self.client, WORLD_UNITS_PER_EDGE
        # Plain floats and math, not numpy: the arrays are 4 cubes long and this
        # loop runs every step, where numpy's per-call overhead would dominate.
        start = [p.getBasePositionAndOrientation(b, physicsClientId=c) for b in self._bodies]
        quiet, moved = 0, False
        disp = rot = 0.0
        max_steps = int(round(horizon_s / TIME_STEP))
        for step in range(1, max_steps + 1):
            p.stepSimulation(physicsClientId=c)
            speed = 0.0
            for body, (pos0, orn0) in zip(self._bodies, start):
                pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=c)
                disp = max(disp, math.dist(pos, pos0) / s)
                dot = abs(orn[0] * orn0[0] + orn[1] * orn0[1] + orn[2] * orn0[2] + orn[3] * orn0[3])
                rot = max(rot, 2.0 * math.acos(min(1.0, dot)))
                lin, ang = p.getBaseVelocity(body, physicsClientId=c)
                speed = max(speed, math.hypot(*lin) / s, math.hypot(*ang))
            if disp > DISPLACEMENT_TOL or rot > ROTATION_TOL:
                moved = True
                if stop_on_motion:
                    return Verdict(False, "moved", step, disp, rot)
            quiet = quiet + 1 if speed < REST_SPEED else 0
            if quiet >= REST_STEPS:
                return Verdict(not moved, "moved" if moved else "at_rest", step, disp, rot)
        return Verdict(not moved, "moved" if moved else "horizon", max_steps, disp, rot)

    def run_to_rest(self, horizon_s: float = HORIZON_S) -> int:
        """Simulate until every cube has been at rest for ``REST_STEPS`` steps, or ``horizon_s``
        passes; returns the steps taken. It stops exactly where ``settle(stop_on_motion=False)``
        stops, without tracking displacement: for showing a result, which needs no verdict.
        """
        if self._scene is None:
            raise RuntimeError("World.run_to_rest() before World.load(scene)")
        c, s = self.client, WORLD_UNITS_PER_EDGE
        quiet = 0
        max_steps = int(round(horizon_s / TIME_STEP))
        for step in range(1, max_steps + 1):
            p.stepSimulation(physicsClientId=c)
            speed = 0.0
            for body in self._bodies:
                lin, ang = p.getBaseVelocity(body, physicsClientId=c)
                speed = max(speed, math.hypot(*lin) / s, math.hypot(*ang))
            quiet = quiet + 1 if speed < REST_SPEED else 0
            if quiet >= REST_STEPS:
                return step
        return max_steps

    def render(self, width: int = 256, height: int = 256) -> np.ndarray:
        """The world as the camera sees it now: ``(height, width, 3)`` uint8."""
        return render_rgb(self.client, width, height)
