"""Rendering styles and domain randomisation (DESIGN.md section 9): what an episode's images look like.

A :class:`Look` is every setting of one rendered look: the camera, the light, the backdrop, the
blocks' paint and wood grain, and the photo post-processing (blur, noise, JPEG). :data:`STYLES`
holds the fixed looks an env's ``style`` kwarg names; ``randomise`` perturbs that look once per
episode (:func:`draw_look`). :class:`Styler` is what :class:`~envs.tower_env.TowerEnv` holds: it
draws the episode's look at reset and renders the physics world with it
(:mod:`envs.look_render`). The looks change pixels only: the physics, the scene draws, the
verdict and the reward never see them.

Styles
------

* ``"plain"`` (the default): the grey room of :mod:`envs.render`, exactly as before styles
  existed (without randomisation the image is bitwise the one :meth:`envs.physics.World.render`
  gives, and the perceive agents' camera model holds).
* ``"lerer"``: photo-like, after the real block-tower photos of Lerer, Gross & Fergus (2016)
  that ``RealTowerStability-v0`` shows. Every constant of :data:`LERER` was chosen **by eye**
  from six lerer-dev photos (7, 18, 20, 40, 111 and 259.png) put side by side with renders;
  nothing was measured or fitted on the photos (they stay an evaluation set):

  - backdrop: a light warm-grey cloth sweep with soft wrinkles and no visible floor-wall
    seam, a little lighter low in the frame (the floor) than high (the hanging cloth);
  - blocks: painted wood, saturated red / green / blue / yellow (the photos' four) a little
    darker than the plain palette, the wood grain faintly visible through the paint; the
    other palette colours are painted the same way (same hue), so a scene's colours stay
    tellable apart and ``TowerBuild-v0``'s colour names stay true;
  - light: soft, from above and in front, a little from the left; faint, soft shadows;
  - camera: looking down 25 degrees at the middle of the frame, about 18 degrees at the top
    of a 3-4 cube tower (whose top cube's top face shows about a third of its front face's
    height: atan(1/3) = 18 degrees), a longer lens than plain (30 degrees of
    field of view: edges that should be parallel barely converge), the tower's foot about
    85% of the way down the frame. The photos frame about 6 block edges at the tower (a cube
    is a sixth of the width); ``TopBlockStability-v0``'s scenes fit such a frame, the wider
    and taller ones do not (side blocks reach 4.2 edges to the side, ``TowerStability-v0``'s
    towers 6.3 up), so the frame is per scene family (:data:`LERER_FRAMES`, :func:`style_look`);
  - photo: slightly soft (a 0.7 px Gaussian at 256 px), a little sensor noise, JPEG.

Domain randomisation
--------------------

``randomise=True`` perturbs every setting by the default amounts of :data:`RANDOMISE_DEFAULTS`;
a dict perturbs only the settings it names, each by the amount given (``True``: the default
amount; 0: none). Each episode's draws come from a generator derived from ``env.np_random``
(:func:`derive_rng`) without advancing it, so a seed still gives the same scene with and
without randomisation, and the same seed gives bitwise-equal images.

=================  =======  =====================================================================
key                default  what is drawn (uniform, +- the amount about the style's value)
=================  =======  =====================================================================
``camera``         0.5      eye position, per axis, block edges (looking at the same point)
``camera_angle``   1.5      view direction (pitch and yaw) and roll, degrees
``fov``            2.0      field of view, degrees
``light_direction`` 25.0    light direction: azimuth and elevation, degrees
``light_intensity`` 0.2     ambient and diffuse light, relative
``light_colour``   0.08     light colour, per channel, relative
``colours``        0.12     block paint: saturation and value relative, hue +- 0.15 x amount turns
``textures``       0.15     wood grain contrast (absolute), grain pattern (one of four) per block
``backdrop``       0.08     backdrop colour per channel and brightness, relative; its wrinkles
``shadow``         0.2      shadow strength (absolute, 0-1)
``noise``          4.0      sensor noise: sigma drawn in [0, amount] on top of the style's (0-255)
``blur``           0.8      Gaussian blur: radius drawn in [0, amount] on top of the style's (px at 256)
``jpeg``           40       JPEG quality drawn in [q - amount, q] (q: the style's, else 95)
=================  =======  =====================================================================
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import render
from .scenes import COLOR_NAMES

__all__ = ["Look", "STYLES", "PLAIN", "LERER", "LERER_FRAMES", "lerer_camera", "style_look", "RANDOMISE_DEFAULTS",
           "check_randomise", "draw_look", "derive_rng", "paint", "Styler"]

Vec3 = tuple[float, float, float]
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """Every setting of one rendered look (hashable: backdrops are cached by it).

    Attributes:
        name: the style it was made from (``"plain"`` or ``"lerer"``).
        eye, target: camera position and the point it looks at, block edges (world frame:
            x right, y away from the camera, z up).
        roll: camera roll about the view direction, degrees.
        fov: vertical field of view, degrees.
        light_direction: direction towards the light (pybullet's ``lightDirection``), any length.
        light_colour: RGB multipliers of the light, 0-1.
        ambient, diffuse, specular: TinyRenderer's light coefficients.
        backdrop: ``"room"`` (the grey room's floor and wall, rendered) or ``"cloth"`` (a drawn
            photo backdrop: a cloth sweep).
        floor_rgb, wall_rgb: room colours (0-255); for ``"cloth"``, the lower and upper cloth colours.
        wrinkles: cloth wrinkle depth (relative brightness); ``backdrop_seed`` seeds their pattern.
        paint: ``"scene"`` (the scene's own colours) or ``"lerer"`` (:func:`paint`).
        colour_jitter: ``(hue turns, saturation, value)`` half-ranges of per-block colour draws
            (seeded by ``colour_seed`` and the block's index).
        wood: wood-grain contrast, 0 (none) to 1; per-block grain patterns come from ``colour_seed``.
        shadow: soft-shadow strength, 0 (none) to 1 (black); ``shadow_blur``: its softness, px at 256.
        blur: Gaussian blur radius of the whole image, px at 256 (0: none).
        noise: sensor-noise sigma, 0-255 units (one pattern per episode, ``noise_seed``).
        jpeg: JPEG quality 1-95, or None (no compression).
    """

    name: str
    eye: Vec3
    target: Vec3
    roll: float
    fov: float
    light_direction: Vec3
    light_colour: Vec3
    ambient: float
    diffuse: float
    specular: float
    backdrop: str
    floor_rgb: RGB
    wall_rgb: RGB
    wrinkles: float = 0.0
    backdrop_seed: int = 0
    paint: str = "scene"
    colour_jitter: Vec3 = (0.0, 0.0, 0.0)
    colour_seed: int = 0
    wood: float = 0.0
    shadow: float = 0.0
    shadow_blur: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    noise_seed: int = 0
    jpeg: int | None = None


def _rgb(rgba: tuple[float, ...]) -> RGB:
    return tuple(int(round(v * 255)) for v in rgba[:3])  # type: ignore[return-value]


PLAIN = Look("plain", render.CAMERA_EYE, render.CAMERA_TARGET, 0.0, render.FOV_DEG, render.LIGHT_DIRECTION,
             (1.0, 1.0, 1.0), 0.55, 0.5, 0.0, "room", _rgb(render.FLOOR_RGBA), _rgb(render.WALL_RGBA))

_LERER_ELEVATION, _LERER_FOV = 25.0, 30.0  # degrees
# Half the width the lerer camera frames at the tower axis, block edges, per scene family: as close to
# the photos' 3 as the family's scenes allow (side blocks and build slots reach 4.2 edges to the side,
# stability towers 6.3 up), with a margin for randomisation's camera jitter. Other families: 4.8.
LERER_FRAMES: dict[str, float] = {"top_block": 3.3, "side_block": 4.8, "build": 4.8, "stability": 4.0,
                                  "pyramid": 4.0, "shapestacks": 3.5}


def lerer_camera(frame: float) -> tuple[Vec3, Vec3]:
    """``(eye, target)`` of the lerer camera framing x in +-``frame`` block edges at the tower axis.

    It looks down by 25 degrees through a 30-degree lens at ``z = 0.7 * frame`` on the axis, which
    puts the floor there about 85% of the way down the frame, as in the photos.
    """
    distance = frame / math.tan(math.radians(_LERER_FOV / 2))
    target_z = 0.7 * frame
    eye = (0.0, -distance * math.cos(math.radians(_LERER_ELEVATION)),
           target_z + distance * math.sin(math.radians(_LERER_ELEVATION)))
    return eye, (0.0, 0.0, target_z)


LERER = Look(
    "lerer", *lerer_camera(4.8), roll=0.0, fov=_LERER_FOV,
    light_direction=(-0.35, -0.6, 1.0), light_colour=(1.0, 0.98, 0.95),  # a slightly warm, soft key light
    ambient=0.45, diffuse=0.6, specular=0.05,  # the photos' top faces lit brightest, the sides darker
    backdrop="cloth", floor_rgb=(222, 218, 213), wall_rgb=(203, 199, 194), wrinkles=0.05,
    paint="lerer", wood=0.15, shadow=0.35, shadow_blur=6.0, blur=0.7, noise=2.0, jpeg=85,
)
STYLES: dict[str, Look] = {"plain": PLAIN, "lerer": LERER}


def style_look(style: str, family: str | None = None) -> Look:
    """The look of ``style`` for scenes of ``family`` (:data:`envs.scenes.FAMILIES`): lerer's camera
    frames each family as tightly as :data:`LERER_FRAMES` says; plain's is one for all.

    Raises:
        ValueError: an unknown style.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {sorted(STYLES)}")
    if style == "lerer" and family in LERER_FRAMES:
        eye, target = lerer_camera(LERER_FRAMES[family])
        return replace(LERER, eye=eye, target=target)
    return STYLES[style]


# The photos' paint (by eye, see the module docstring), by the name of the scene's colour
# (envs.scenes.COLOR_NAMES); the colours the photos lack are painted at their hue, as dark and saturated.
_PAINT_BY_NAME: dict[str, RGB] = {
    "red": (185, 25, 30), "green": (25, 120, 50), "blue": (25, 55, 165), "yellow": (225, 205, 40),
    "orange": (220, 110, 25), "purple": (100, 40, 145), "cyan": (25, 140, 160), "magenta": (180, 30, 125),
    "grey": (120, 108, 95),  # TowerBuild-v0's base: a dull stained wood
}
_PAINT: dict[RGB, RGB] = {rgb: _PAINT_BY_NAME[name] for rgb, name in COLOR_NAMES.items()}

RANDOMISE_DEFAULTS: dict[str, float] = {
    "camera": 0.5, "camera_angle": 1.5, "fov": 2.0, "light_direction": 25.0, "light_intensity": 0.2,
    "light_colour": 0.08, "colours": 0.12, "textures": 0.15, "backdrop": 0.08, "shadow": 0.2,
    "noise": 4.0, "blur": 0.8, "jpeg": 40.0,
}


def paint(color: tuple[int, int, int], look: Look, index: int) -> tuple[float, float, float]:
    """The RGB (0-1) a block of scene colour ``color`` (0-255) shows under ``look``.

    ``paint="scene"`` keeps the colour, ``"lerer"`` takes the photos' paint (a colour not in the
    palette is darkened by 0.85); then ``colour_jitter`` moves hue, saturation and value by draws
    seeded by ``(look.colour_seed, index)``, so a block keeps its colour within an episode.
    """
    rgb = tuple(int(v) for v in color)
    if look.paint == "lerer":
        rgb = _PAINT.get(rgb, tuple(int(round(v * 0.85)) for v in rgb))  # type: ignore[arg-type]
    out = tuple(v / 255 for v in rgb)
    if any(look.colour_jitter):
        dh, ds, dv = np.random.default_rng([look.colour_seed, index]).uniform(-1.0, 1.0, 3)
        h, s, v = colorsys.rgb_to_hsv(*out)
        jh, js, jv = look.colour_jitter
        out = colorsys.hsv_to_rgb((h + dh * jh) % 1.0, min(1.0, s * (1 + ds * js)), min(1.0, v * (1 + dv * jv)))
    return out  # type: ignore[return-value]


def check_randomise(randomise: Any) -> dict[str, float]:
    """The amounts of a ``randomise`` kwarg: ``{}`` for False/None, :data:`RANDOMISE_DEFAULTS` for
    True, a dict's named keys (``True``: the default amount) otherwise.

    Raises:
        ValueError: not a bool, None or dict; an unknown key; an amount that is not a finite number >= 0.
    """
    if randomise is None or randomise is False:
        return {}
    if randomise is True:
        return dict(RANDOMISE_DEFAULTS)
    if not isinstance(randomise, dict):
        raise ValueError(f"randomise must be True, False or a dict of amounts, got {randomise!r}")
    amounts = {}
    for key, value in randomise.items():
        if key not in RANDOMISE_DEFAULTS:
            raise ValueError(f"unknown randomise key {key!r}; expected some of {sorted(RANDOMISE_DEFAULTS)}")
        if value is True:
            value = RANDOMISE_DEFAULTS[key]
        if value is False or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"randomise[{key!r}] must be a finite number >= 0 or True (default "
                             f"{RANDOMISE_DEFAULTS[key]}), got {value!r}")
        if value > 0:
            amounts[key] = float(value)
    return amounts


def derive_rng(np_random: np.random.Generator) -> np.random.Generator:
    """A generator seeded by the state of ``np_random``, which it leaves as it was.

    The env's scene draws therefore come out the same with or without randomisation, while the
    looks still follow the env's seed (same state, same looks).
    """
    state = json.dumps(np_random.bit_generator.state, sort_keys=True, default=str)
    words = np.frombuffer(hashlib.sha256(b"cubeworld-look:" + state.encode()).digest(), dtype=np.uint32)
    return np.random.default_rng(words)


def _turn(vector: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """``vector`` turned by ``yaw`` about z, then tilted by ``pitch`` towards z (keeps its length)."""
    r = float(np.linalg.norm(vector))
    azimuth = math.atan2(vector[1], vector[0]) + math.radians(yaw_deg)
    elevation = math.asin(max(-1.0, min(1.0, vector[2] / r))) + math.radians(pitch_deg)
    elevation = max(-math.pi / 2 + 1e-3, min(math.pi / 2 - 1e-3, elevation))
    return r * np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                         math.sin(elevation)])


def draw_look(base: Look, amounts: dict[str, float], rng: np.random.Generator) -> Look:
    """``base`` perturbed by ``amounts`` (:func:`check_randomise`), every draw from ``rng``.

    Every key draws its numbers whether or not it is in ``amounts`` (an absent key's are unused),
    so turning one key on or off leaves the other keys' draws as they were.
    """
    def u(n: int = 1) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, n)

    def a(key: str) -> float:
        return amounts.get(key, 0.0)

    seeds = rng.integers(0, 2**31, 3)
    cam, angle, fov, light_dir, light_int, light_col = u(3), u(3), u(1), u(2), u(1), u(3)
    tex, back, back_bright, shadow, noise, blur, jpeg = u(1), u(3), u(1), u(1), rng.random(), rng.random(), rng.random()
    # The eye moves about the point it looks at (a new viewpoint, the tower still in the middle);
    # the angle jitter then turns the view away from that point.
    eye = np.array(base.eye) + a("camera") * cam
    view = _turn(np.array(base.target) - eye, a("camera_angle") * angle[0], a("camera_angle") * angle[1])
    scale = 1.0 + a("light_intensity") * light_int[0]
    colour = np.clip(np.array(base.light_colour) * (1 + a("light_colour") * light_col), 0.0, 1.0)
    back_scale = (1 + a("backdrop") * back) * (1 + a("backdrop") * back_bright[0])

    def backdrop_rgb(rgb: RGB) -> RGB:
        return tuple(int(v) for v in np.clip(np.round(np.array(rgb) * back_scale), 0, 255))  # type: ignore[return-value]

    quality = base.jpeg if base.jpeg is not None else 95
    # field -> (the key that randomises it, its drawn value); a field whose key is off keeps the base value.
    drawn = {
        "eye": ("camera", tuple(float(v) for v in eye)),
        "target": ("camera_angle" if "camera_angle" in amounts else "camera", tuple(float(v) for v in eye + view)),
        "roll": ("camera_angle", base.roll + a("camera_angle") * float(angle[2])),
        "fov": ("fov", float(np.clip(base.fov + a("fov") * fov[0], 10.0, 80.0))),
        "light_direction": ("light_direction", tuple(float(v) for v in _turn(
            np.array(base.light_direction), a("light_direction") * light_dir[0], a("light_direction") * light_dir[1]))),
        "light_colour": ("light_colour", tuple(float(v) for v in colour)),
        "ambient": ("light_intensity", float(np.clip(base.ambient * scale, 0.0, 1.0))),
        "diffuse": ("light_intensity", float(np.clip(base.diffuse * scale, 0.0, 1.0))),
        "floor_rgb": ("backdrop", backdrop_rgb(base.floor_rgb)),
        "wall_rgb": ("backdrop", backdrop_rgb(base.wall_rgb)),
        "wrinkles": ("backdrop", float(base.wrinkles * max(0.0, 1 + 6 * a("backdrop") * back_bright[0]))),
        "backdrop_seed": ("backdrop", int(seeds[0])),
        "colour_jitter": ("colours", (0.15 * a("colours"), a("colours"), a("colours"))),
        "colour_seed": ("colours" if "colours" in amounts else "textures", int(seeds[1])),
        "wood": ("textures", float(np.clip(base.wood + a("textures") * tex[0], 0.0, 1.0))),
        "shadow": ("shadow", float(np.clip(base.shadow + a("shadow") * shadow[0], 0.0, 1.0))),
        "shadow_blur": ("shadow", base.shadow_blur if base.shadow_blur > 0 else 6.0),
        "blur": ("blur", base.blur + a("blur") * blur),
        "noise": ("noise", base.noise + a("noise") * noise),
        "noise_seed": ("noise", int(seeds[2])),
        "jpeg": ("jpeg", int(round(quality - a("jpeg") * jpeg))),
    }
    return replace(base, **{name: value for name, (key, value) in drawn.items() if key in amounts})


class Styler:
    """An env's style and randomisation: draws each episode's look and renders worlds with it.

    Args:
        style: a key of :data:`STYLES`.
        randomise: see :func:`check_randomise`.
        family: the env's scene family (:func:`style_look`), or None.

    Raises:
        ValueError: an unknown style or a bad ``randomise``.
    """

    def __init__(self, style: str = "plain", randomise: Any = False, family: str | None = None) -> None:
        self.base = style_look(style, family)
        self.style = style
        self.amounts = check_randomise(randomise)
        self.look: Look = self.base
        self._renderer = None

    @property
    def plain(self) -> bool:
        """Today's images: the plain style without randomisation (rendered by the physics world itself)."""
        return self.style == "plain" and not self.amounts

    def new_episode(self, np_random: np.random.Generator) -> None:
        """Draw this episode's look from ``np_random`` (:func:`derive_rng`: its state is left as it was)."""
        if self.amounts:
            self.look = draw_look(self.base, self.amounts, derive_rng(np_random))

    def render(self, world: Any, size: int) -> np.ndarray:
        """``(size, size, 3)`` uint8: the loaded scene of ``world`` (an :class:`envs.physics.World`),
        in its simulated poses, under this episode's look."""
        if self.plain:
            return world.render(size, size)
        if self._renderer is None:
            from .look_render import LookRenderer

            self._renderer = LookRenderer()
        return self._renderer.render(world.scene_now(), self.look, size, size)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_renderer": None}
