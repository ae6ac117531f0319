"""The one camera, the light and the room's colours; rendering a pybullet world to RGB.

The camera looks at the tower axis from the front (from -y), slightly from
above, and frames x in about [-4.5, 4.5] block edges at the tower, wide enough
for every side-block scene; the tower stands in the middle of the image. The
room is a plain grey floor and a lighter grey back wall. Rendering uses
pybullet's CPU TinyRenderer, so images are bitwise reproducible across runs
and machines with the same pybullet build. This is the ``"plain"`` style; the others, and
domain randomisation, are :mod:`envs.styles` (rendered by :mod:`envs.look_render`).

Why the room is rendered once: TinyRenderer's cost grows with the pixels it
shades, and the floor and wall cover the whole image (about 13 ms at 256x256
against 1.5 ms for the cubes alone). The room never moves and, with no shadows,
never changes where it shows, and it can never occlude a cube (the floor is
below every cube, the wall behind), so each frame renders the cubes alone and
lays them over a cached render of the empty room: the same pixels as rendering
everything, at a tenth of the cost.
"""

from __future__ import annotations

import functools

import numpy as np

from .bullet import pybullet as p

__all__ = ["render_rgb", "room_image", "add_room", "camera_matrices", "FLOOR_RGBA", "WALL_RGBA", "CAMERA_EYE",
           "CAMERA_TARGET", "FOV_DEG", "LIGHT_DIRECTION", "NEAR", "FAR", "WALL_Y"]

FLOOR_RGBA = (0.55, 0.55, 0.55, 1.0)
WALL_RGBA = (0.75, 0.75, 0.75, 1.0)
WALL_Y = 6.0  # block edges behind the tower axis

CAMERA_EYE = (0.0, -13.0, 4.6)
CAMERA_TARGET = (0.0, 0.0, 2.6)
FOV_DEG = 38.0
NEAR, FAR = 0.5, 40.0
LIGHT_DIRECTION = (-3.0, -6.0, 10.0)


@functools.cache
def _matrices(width: int, height: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    view = p.computeViewMatrix(CAMERA_EYE, CAMERA_TARGET, (0.0, 0.0, 1.0))
    proj = p.computeProjectionMatrixFOV(FOV_DEG, width / height, NEAR, FAR)
    return tuple(view), tuple(proj)


def camera_matrices(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL view and projection matrices (4x4 float64, column-major as pybullet gives them).

    Pixel of a world point ``q``: ``clip = P @ V @ [q, 1]``, ``ndc = clip[:3] / clip[3]``,
    column ``(ndc[0] + 1) / 2 * width``, row ``(1 - ndc[1]) / 2 * height``.
    """
    view, proj = _matrices(width, height)
    return (np.asarray(view).reshape(4, 4).T, np.asarray(proj).reshape(4, 4).T)


def _camera_image(client: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    view, proj = _matrices(width, height)
    _, _, rgba, _, seg = p.getCameraImage(
        width,
        height,
        viewMatrix=view,
        projectionMatrix=proj,
        lightDirection=LIGHT_DIRECTION,
        lightAmbientCoeff=0.55,
        lightDiffuseCoeff=0.5,
        lightSpecularCoeff=0.0,
        shadow=0,
        renderer=p.ER_TINY_RENDERER,
        physicsClientId=client,
    )
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
    return rgb, np.asarray(seg).reshape(height, width)


def add_room(client: int, visible: bool, floor_rgba: tuple[float, ...] = FLOOR_RGBA,
             wall_rgba: tuple[float, ...] = WALL_RGBA) -> None:
    """Add the room to ``client``: the floor (a collision plane) and, if ``visible``, its
    visuals (grey unless ``floor_rgba`` / ``wall_rgba``, RGBA 0-1, say otherwise) and the back
    wall. An invisible floor (alpha 0) is skipped by TinyRenderer."""
    col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=client)
    rgba = floor_rgba if visible else (0.0, 0.0, 0.0, 0.0)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 30, 0.01], rgbaColor=rgba,
                              visualFramePosition=[0, 0, -0.01], physicsClientId=client)
    p.createMultiBody(0, col, vis, physicsClientId=client)
    if visible:
        wall = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 0.01, 15], rgbaColor=wall_rgba,
                                   physicsClientId=client)
        p.createMultiBody(0, -1, wall, basePosition=[0, WALL_Y, 15], physicsClientId=client)


@functools.lru_cache(maxsize=8)
def room_image(width: int, height: int) -> np.ndarray:
    """The empty room from the camera, ``(height, width, 3)`` uint8, rendered once per size."""
    client = p.connect(p.DIRECT)
    try:
        add_room(client, visible=True)
        rgb, _ = _camera_image(client, width, height)
    finally:
        p.disconnect(physicsClientId=client)
    rgb = rgb.copy()
    rgb.flags.writeable = False
    return rgb


def render_rgb(client: int, width: int = 256, height: int = 256) -> np.ndarray:
    """Render the world of pybullet client ``client`` (its room invisible) from the fixed camera.

    Returns:
        ``(height, width, 3)`` uint8 RGB array: the client's visible bodies over the room.
    """
    rgb, seg = _camera_image(client, width, height)
    out = room_image(width, height).copy()
    cubes = seg >= 0
    out[cubes] = rgb[cubes]
    return out
