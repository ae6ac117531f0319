"""Rendering a scene under a :class:`envs.styles.Look`: wood-textured blocks, a backdrop, soft shadows, photo effects.

The physics never sees a look: :class:`LookRenderer` keeps its own pybullet DIRECT client, in
which it rebuilds the scene's blocks as visual-only bodies at their simulated poses (no mass, no
collision shape) and renders them with pybullet's CPU TinyRenderer, as :mod:`envs.render` does
for the plain room. Every step is deterministic, so a look gives bitwise-equal images.

One frame, in order:

1. **Blocks**: TinyRenderer with the look's camera and light. Boxes (cubes, cuboids) are
   meshes with a texture coordinate per face corner, so a wood-grain texture lies on each
   face (grain running up the side faces); TinyRenderer multiplies it by the block's paint
   (:func:`envs.styles.paint`). The textures are drawn here with numpy (:func:`wood_texture`:
   growth rings warped by smooth noise, plus fine streaks), written once per process to a
   temporary folder (pybullet loads textures from files only). Cylinders and spheres are
   Bullet's primitives, painted, without grain.
2. **Backdrop**, cached per look and size: ``"room"`` renders the room's floor and wall
   (:func:`envs.render.add_room`) with the look's camera, light and colours; ``"cloth"``
   draws a photo backdrop: a vertical blend from the upper cloth colour to the lower one,
   shaded by the slope of a smooth-noise height field (the cloth's folds, :func:`_cloth`).
3. **Soft shadows** on the backdrop: each box's corners (a cylinder's or sphere's bounding
   box) are projected along the light onto the floor plane, their faces filled as polygons
   in the image (at a quarter of its size), the mask blurred (``shadow_blur``), scaled up
   and the backdrop darkened by ``shadow`` times it. A drop shadow on the floor, not a shadow
   map: TinyRenderer's own shadows cost three times a frame and streak across large planes,
   and the photos' are faint and soft anyway. Shadows fall on the floor plane only (not on
   the room's wall or on blocks).
4. Blocks laid over the backdrop (their segmentation mask), then the photo effects with PIL:
   Gaussian blur (``blur``), sensor noise (``noise``; one pattern per episode), JPEG
   (``jpeg``). Radii are given for 256 px and scale with the image.
"""

from __future__ import annotations

import atexit
import functools
import io
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .bullet import BulletClient
from .bullet import pybullet as p
from .physics import WORLD_UNITS_PER_EDGE
from .render import FAR, NEAR, add_room
from .scenes import Cube, Scene
from .styles import LERER, Look, paint

__all__ = ["LookRenderer", "look_matrices", "wood_texture", "project", "WOOD_PATTERNS"]

WOOD_PATTERNS = 4  # grain patterns a look's blocks draw from
_TEXTURE_SIZE = 128
_CONTRAST_STEPS = 20  # wood contrast is rounded to 1/20: at most 21 textures per pattern are written
LIGHT_SUM = LERER.ambient + LERER.diffuse  # the cloth colours are the ones the lerer light shows
RESET_EVERY = 256  # frames between emptyings of the render client (LookRenderer._clear)
_SHADOW_SHRINK = 4  # the shadow mask's size divisor (LookRenderer._shadow_mask)


def look_matrices(look: Look, width: int, height: int) -> tuple[list[float], list[float]]:
    """pybullet's flat column-major view and projection matrices of the look's camera (roll included)."""
    eye, target = np.array(look.eye), np.array(look.target)
    forward = (target - eye) / np.linalg.norm(target - eye)
    side = np.cross(forward, (0.0, 0.0, 1.0))
    side /= np.linalg.norm(side)
    up = np.cross(side, forward)
    roll = math.radians(look.roll)
    up = math.cos(roll) * up + math.sin(roll) * side
    view = p.computeViewMatrix(look.eye, look.target, up.tolist())
    proj = p.computeProjectionMatrixFOV(look.fov, width / height, NEAR, FAR)
    return list(view), list(proj)


def project(points: np.ndarray, view: list[float], proj: list[float], width: int, height: int) -> np.ndarray:
    """Pixel ``(column, row)`` of world points ``(n, 3)`` (block edges), ``(n, 2)`` float64."""
    m = np.asarray(proj).reshape(4, 4).T @ np.asarray(view).reshape(4, 4).T
    clip = np.c_[points, np.ones(len(points))] @ m.T
    ndc = clip[:, :3] / clip[:, 3:4]
    return np.c_[(ndc[:, 0] + 1) / 2 * width, (1 - ndc[:, 1]) / 2 * height]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Noise in [0, 1] of ``shape`` (rows, cols) cells, bicubic-upsampled to ``size`` (width, height)."""
    small = Image.fromarray(rng.random(shape).astype(np.float32), mode="F")
    return np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)


def wood_texture(pattern: int, contrast: float, size: int = _TEXTURE_SIZE) -> np.ndarray:
    """A grey wood-grain texture, ``(size, size, 3)`` uint8: white where there is no grain.

    ``pattern`` seeds the grain (any int); ``contrast`` (0-1) is the darkest grain's depth.
    Grain runs along the texture's rows' direction v (vertical on a block's side faces).
    """
    rng = np.random.default_rng(10_000 + pattern)
    u = np.linspace(0.0, 1.0, size)[None, :]
    warp = 1.5 * _smooth_noise(rng, (4, 3), (size, size))
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (u * (7 + 2 * (pattern % 3)) + warp))
    streaks = _smooth_noise(rng, (3, 64), (size, size))
    grain = np.clip(0.45 * rings**6 + 0.55 * streaks**2, 0.0, 1.0)
    lum = np.round(255 * (1.0 - contrast * grain)).astype(np.uint8)
    return np.repeat(lum[:, :, None], 3, axis=2)


@functools.cache
def _texture_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="cubeworld-wood-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def _texture_file(pattern: int, level: int) -> str:
    path = _texture_dir() / f"wood-{pattern}-{level}.png"
    Image.fromarray(wood_texture(pattern, level / _CONTRAST_STEPS)).save(path, format="PNG")
    return str(path)


@functools.cache
def _box_mesh() -> tuple[list[list[float]], list[int], list[list[float]], list[list[float]]]:
    """A unit box's 24 vertices (a corner per face), 36 indices, normals and texture coordinates.

    Each face takes its own half of the texture (offset per face), so neighbouring faces do not
    repeat one grain; ``v`` follows z on the side faces.
    """
    faces = (((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
             ((0, 1, 0), (-1, 0, 0), (0, 0, 1)), ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
             ((0, 0, 1), (1, 0, 0), (0, 1, 0)), ((0, 0, -1), (1, 0, 0), (0, -1, 0)))
    vertices, indices, normals, uvs = [], [], [], []
    for k, (n, a, b) in enumerate(faces):
        n_, a_, b_ = (np.array(v, dtype=np.float64) for v in (n, a, b))
        base, offset = len(vertices), (k * 0.19) % 0.5
        for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            vertices.append((0.5 * (n_ + s * a_ + t * b_)).tolist())
            normals.append(list(n))
            uvs.append([offset + 0.25 * (s + 1), 0.5 * (t + 1)])
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return vertices, indices, normals, uvs


def _extents(block: Cube) -> tuple[float, float, float]:
    return (block.size,) * 3 if block.extents is None else block.extents  # type: ignore[return-value]


def _rotation(q: tuple[float, float, float, float]) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _corners(block: Cube) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of the block's (bounding) box in the world, block edges."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs * np.array(_extents(block)) / 2
    return local @ _rotation(block.orientation).T + np.array([block.x, block.y, block.z])


# The 6 faces of _corners' box as corner indices in order around each face.
_BOX_FACES = ((0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5))


def _light_args(look: Look) -> dict[str, Any]:
    return dict(lightDirection=list(look.light_direction), lightColor=list(look.light_colour),
                lightAmbientCoeff=look.ambient, lightDiffuseCoeff=look.diffuse,
                lightSpecularCoeff=look.specular, shadow=0, renderer=p.ER_TINY_RENDERER)


def _cloth(look: Look, width: int, height: int) -> np.ndarray:
    """The drawn cloth backdrop, ``(height, width, 3)`` float64 0-255 (see the module docstring).

    The cloth is a height field of smooth noise, wider than tall (hanging folds run sideways), lit
    from above: its brightness follows the field's slope, so folds show a lit and a shaded side.
    The folds flatten towards the bottom, where the cloth lies on the floor.
    """
    rng = np.random.default_rng(look.backdrop_seed)
    blend = np.linspace(0.0, 1.0, height)[:, None] ** 1.5  # the floor's lighter cloth fills the lower part
    base = (1 - blend[:, :, None]) * np.array(look.wall_rgb) + blend[:, :, None] * np.array(look.floor_rgb)
    field = _smooth_noise(rng, (6, 3), (width, height)) + 0.4 * _smooth_noise(rng, (12, 5), (width, height))
    slope_y, slope_x = np.gradient(field)
    relief = -(0.8 * slope_y + 0.3 * slope_x)
    relief = np.clip(relief / max(float(relief.std()), 1e-12), -3.0, 3.0)
    shade = 1.0 + look.wrinkles * relief * (1.0 - 0.6 * blend)
    light = np.array(look.light_colour) * (look.ambient + look.diffuse) / LIGHT_SUM
    return base * shade[:, :, None] * light


class LookRenderer(BulletClient):
    """Renders scenes under looks in its own pybullet DIRECT client (one per env; not thread-safe).

    Pickling drops the client; the next render connects a new one.
    """

    def __init__(self) -> None:
        self._client: int | None = None
        self._backdrops: dict[tuple[Look, int, int], np.ndarray] = {}
        self._bodies: list[int] = []
        self._textures: dict[tuple[int, int], int] = {}  # (pattern, contrast level) -> pybullet texture id
        self._frames = 0  # frames since the client was last emptied

    def __getstate__(self) -> dict:
        return {"_client": None, "_backdrops": {}, "_bodies": [], "_textures": {}, "_frames": 0}

    def _clear(self, everything: bool = False) -> None:
        """Remove the last frame's bodies; every :data:`RESET_EVERY` frames (or ``everything``) empty
        the client, its shapes and textures too. Loading the textures anew each frame would cost
        more than rendering, and removed bodies leave their shapes behind (about 20 KB a frame)."""
        c = self.client
        self._frames += 1
        if everything or self._frames >= RESET_EVERY:
            p.resetSimulation(physicsClientId=c)
            self._textures, self._frames = {}, 0
        else:
            for body in self._bodies:
                p.removeBody(body, physicsClientId=c)
        self._bodies = []

    def render(self, scene: Scene, look: Look, width: int, height: int) -> np.ndarray:
        """``(height, width, 3)`` uint8: ``scene``'s blocks, at their poses, under ``look``."""
        view, proj = look_matrices(look, width, height)
        back = self._backdrop(look, width, height, view, proj)
        if look.shadow > 0:
            back = back * (1.0 - look.shadow * self._shadow_mask(scene, look, view, proj, width, height))[:, :, None]
        rgb, seg = self._blocks(scene, look, view, proj, width, height)
        out = np.where((seg >= 0)[:, :, None], rgb, np.clip(np.round(back), 0, 255).astype(np.uint8))
        return _photo(out.astype(np.uint8), look, width)

    def _blocks(self, scene: Scene, look: Look, view, proj, width: int, height: int):
        self._clear()
        c = self.client
        level = int(round(look.wood * _CONTRAST_STEPS))
        patterns = np.random.default_rng([look.colour_seed, 1]).integers(0, WOOD_PATTERNS, len(scene.cubes))
        s = WORLD_UNITS_PER_EDGE
        for i, block in enumerate(scene.cubes):
            rgba = [*paint(block.color, look, i), 1.0]
            ex, ey, ez = (v * s for v in _extents(block))
            if block.shape in ("cube", "cuboid"):
                vertices, indices, normals, uvs = _box_mesh()
                # One unit mesh scaled by meshScale: pybullet keeps every distinct vertex list it was
                # given for good (about 5 KB each, even across resetSimulation), and sizes are continuous.
                vis = p.createVisualShape(p.GEOM_MESH, vertices=vertices, indices=indices, normals=normals, uvs=uvs,
                                          meshScale=[ex, ey, ez], rgbaColor=rgba, physicsClientId=c)
            elif block.shape == "cylinder":
                vis = p.createVisualShape(p.GEOM_CYLINDER, radius=ex / 2, length=ez, rgbaColor=rgba,
                                          physicsClientId=c)
            else:
                vis = p.createVisualShape(p.GEOM_SPHERE, radius=ex / 2, rgbaColor=rgba, physicsClientId=c)
            body = p.createMultiBody(0, -1, vis, basePosition=[block.x * s, block.y * s, block.z * s],
                                     baseOrientation=list(block.orientation), physicsClientId=c)
            self._bodies.append(body)
            if level > 0 and block.shape in ("cube", "cuboid"):
                key = (int(patterns[i]), level)
                if key not in self._textures:
                    self._textures[key] = p.loadTexture(_texture_file(*key), physicsClientId=c)
                p.changeVisualShape(body, -1, textureUniqueId=self._textures[key], physicsClientId=c)
        _, _, rgba_img, _, seg = p.getCameraImage(width, height, viewMatrix=view, projectionMatrix=proj,
                                                  physicsClientId=c, **_light_args(look))
        rgb = np.asarray(rgba_img, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        return rgb, np.asarray(seg).reshape(height, width)

    def _backdrop(self, look: Look, width: int, height: int, view, proj) -> np.ndarray:
        """The look's backdrop, float64 ``(height, width, 3)``, cached (a few looks per renderer)."""
        key = (look, width, height)
        if key not in self._backdrops:
            if look.backdrop == "cloth":
                back = np.array(_cloth(look, width, height))
            else:
                self._clear(everything=True)
                c = self.client
                add_room(c, True, [v / 255 for v in look.floor_rgb] + [1.0], [v / 255 for v in look.wall_rgb] + [1.0])
                _, _, rgba, _, _ = p.getCameraImage(width, height, viewMatrix=view, projectionMatrix=proj,
                                                    physicsClientId=c, **_light_args(look))
                back = np.asarray(rgba, dtype=np.float64).reshape(height, width, 4)[:, :, :3].copy()
                self._clear(everything=True)  # the room must not show in the blocks' frames
            if len(self._backdrops) >= 4:  # an episode reuses one look; randomised episodes each bring a new one
                self._backdrops.pop(next(iter(self._backdrops)))
            back.flags.writeable = False
            self._backdrops[key] = back
        return self._backdrops[key]

    @staticmethod
    def _shadow_mask(scene: Scene, look: Look, view, proj, width: int, height: int) -> np.ndarray:
        """Soft floor shadows of the blocks, ``(height, width)`` float64 in [0, 1]."""
        light = np.array(look.light_direction, dtype=np.float64)
        if light[2] <= 1e-3:  # light at or below the horizon: no floor shadow
            return np.zeros((height, width))
        # Drawn and blurred at a quarter of the size, then scaled up: the shadow is soft anyway, and
        # the blur at full size cost as much as the blocks' render.
        small = (max(1, width // _SHADOW_SHRINK), max(1, height // _SHADOW_SHRINK))
        mask = Image.new("L", small, 0)
        draw = ImageDraw.Draw(mask)
        for block in scene.cubes:
            corners = _corners(block)
            floor = corners - light[None, :] * (np.maximum(corners[:, 2:3], 0.0) / light[2])
            pixels = project(floor, view, proj, small[0], small[1])
            for face in _BOX_FACES:
                draw.polygon([tuple(pixels[k]) for k in face], fill=255)
        radius = look.shadow_blur * small[0] / 256
        if radius > 0:
            mask = mask.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(mask.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64) / 255


def _photo(image: np.ndarray, look: Look, width: int) -> np.ndarray:
    """Blur, sensor noise and JPEG, as the look says; uint8 in, uint8 out."""
    if look.blur > 0:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(look.blur * width / 256)))
    if look.noise > 0:
        noise = _noise(look.noise_seed, image.shape) * look.noise
        image = np.clip(np.round(image + noise), 0, 255).astype(np.uint8)
    if look.jpeg is not None:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(np.clip(look.jpeg, 1, 95)))
        image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return np.ascontiguousarray(image, dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise of ``shape`` (float32), one pattern per seed (an episode's frames share it)."""
    noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    noise.flags.writeable = False
    return noise
