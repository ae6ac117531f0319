"""The perceive agent's photo pipeline: coloured blocks in a photo of unknown camera -> a ``top_block`` scene.

A heuristic, documented as such (:class:`agents.perceive.PerceiveSimulateAgent` uses it for
every image that is not a plain render). With the settings of a :class:`PhotoParams`:

1. Segmentation: pixels with HSV saturation above ``sat_min`` and value above ``val_min``
   (the Lerer backdrop is white cloth) are labelled with the circularly nearest reference hue
   of :data:`PHOTO_HUES` (red, yellow, green, blue: the photos' four paints), each colour's mask
   is cleaned by a 3x3 opening and split into 8-connected components of at least
   ``min_area`` of the image. The tower is the largest (by area) cluster of components that
   touch after a 3-pixel dilation, so stray blocks are ignored.
2. Measurement: each component is a block, ordered by its lowest row; its horizontal centre is
   the median, over the lowest ``rows`` fraction of its rows (the front face; the top is occluded
   by the block above or foreshortened), of each row's mid-point; its width the median row width.
3. Scale: the block edge in pixels is, for ``unit="pitch"``, the median vertical pitch between
   consecutive blocks' lowest rows (stacked blocks are one edge apart) when it lies within
   ``pitch_band`` times the median width, else the median width; for ``unit="width"``, the
   median width (which also counts any side face a turned block shows).
4. Scene: each block's ``x`` is its centre's offset from the bottom block's, in edges, and the
   blocks are stacked at ``z = 0.5, 1.5, ...`` (depth offsets, turns and perspective ignored).

Where the constants come from. :data:`SHIPPED` (the default) is read from
``agents/data/perceive_photo.json``, which ``cubeworld calibrate-perceive`` writes: it is chosen
on seeded ``style="lerer"``, ``randomise=True`` renders of ``TopBlockStability-v0`` against their
ground truth, never on photos (:mod:`agents.perceive_calibration` gives the grid, the data and
the criterion). Chosen (``cubeworld calibrate-perceive``, seeds 0-199, 288 grid points): saturation
above 120/255, value above 30/255, blocks of at least 0.2% of the image, centre and width over all of
a block's rows, unit ``"width"``; accuracy 0.858 on its 400 renders. Held out (seeds 10000-10199, the
same recipe): 0.843 (top-block 0.970, top-cube offset error 0.036 edges; towers 0.715), against
0.785 (0.910, 0.109; 0.660) with :data:`LEGACY`. On the 29 lerer-dev photos, measured once after the
recipe was fixed and run: 18/29 = 0.621, out of sample (the legacy constants' 18/29 is in-sample).
The reference hues are the hues of the lerer style's paints
(:func:`envs.styles.paint`) of the four colours, rounded to a degree. Not calibrated (renders
cannot inform them: their towers have no stray blocks and no touching blocks of one colour):
the 3x3 opening and the 3-pixel dilation, set when the pipeline was first developed.

:data:`LEGACY` holds the settings of the first version, developed on the 29 lerer-dev photos
themselves (their accuracy there, 18/29 = 0.62, is in-sample); an agent built with them declares
so (:mod:`evaluation.in_sample`).
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from envs.scenes import PALETTE, RED, Cube, Scene
from envs.styles import LERER, paint

__all__ = ["PhotoParams", "PHOTO_HUES", "PHOTO_PARAMS_FILE", "SHIPPED", "LEGACY", "PHOTO_UNITS",
           "load_photo_params", "segment_photo", "measure_blocks", "scene_from_blocks", "perceive_photo"]

PHOTO_UNITS = ("pitch", "width")
PHOTO_PARAMS_FILE = Path(__file__).parent / "data" / "perceive_photo.json"
_FOUR = {"red": RED, "yellow": PALETTE["yellow"], "green": PALETTE["green"], "blue": PALETTE["blue"]}


def _paint_hue(rgb: tuple[int, int, int]) -> float:
    return round(colorsys.rgb_to_hsv(*paint(rgb, LERER, 0))[0] * 360.0) % 360.0


# Reference hue (degrees) of each of the photos' four colours, keyed by the scene colour a block gets.
PHOTO_HUES: dict[tuple[int, int, int], float] = {rgb: _paint_hue(rgb) for rgb in _FOUR.values()}


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of ``(..., 3)`` RGB (uint8 or 0-255)."""
    c = rgb.astype(np.float64) / 255.0
    mx, mn = c.max(-1), c.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(d > 0, h * 60.0, 0.0)
    return h, d / np.where(mx > 0, mx, 1.0), mx


def nearest_hue(hue: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Index into ``refs`` (degrees) of the circularly nearest reference hue, per pixel."""
    diff = np.abs(hue[..., None] - refs)
    return np.argmin(np.minimum(diff, 360.0 - diff), axis=-1)


def components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Boolean masks of the 8-connected components of ``mask`` with at least ``min_area`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    areas = np.bincount(labels.ravel())
    return [labels == i for i in range(1, n + 1) if areas[i] >= min_area]


@dataclass(frozen=True)
class PhotoParams:
    """The photo pipeline's chosen constants (see the module docstring for where each acts).

    Attributes:
        sat_min, val_min: HSV saturation and value thresholds of a block pixel, 0-1.
        min_area: smallest block component, a fraction of the image's pixels.
        rows: fraction of a block's rows, counted from its lowest, that give its centre and width (0-1].
        unit: ``"pitch"`` or ``"width"``: what one block edge is in pixels.
        pitch_band: ``(lo, hi)``: the pitch is used only within ``lo``-``hi`` times the median width.
        hues: reference hues (degrees) of red, yellow, green, blue; default :data:`PHOTO_HUES`.

    Raises:
        ValueError: a value out of its range (the message names it and the range).
    """

    sat_min: float
    val_min: float
    min_area: float
    rows: float
    unit: str
    pitch_band: tuple[float, float]
    hues: tuple[float, ...] = tuple(PHOTO_HUES.values())

    def __post_init__(self) -> None:
        for name in ("sat_min", "val_min"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0.0 < self.min_area < 0.5:
            raise ValueError(f"min_area is a fraction of the image in (0, 0.5), got {self.min_area!r}")
        if not 0.0 < self.rows <= 1.0:
            raise ValueError(f"rows is a fraction of a block's rows in (0, 1], got {self.rows!r}")
        if self.unit not in PHOTO_UNITS:
            raise ValueError(f"unit must be one of {PHOTO_UNITS}, got {self.unit!r}")
        lo, hi = self.pitch_band
        if not 0.0 <= lo < hi:
            raise ValueError(f"pitch_band must be (lo, hi) with 0 <= lo < hi, got {self.pitch_band!r}")
        object.__setattr__(self, "pitch_band", (float(lo), float(hi)))
        if len(self.hues) != len(PHOTO_HUES):
            raise ValueError(f"hues must give {len(PHOTO_HUES)} degrees (red, yellow, green, blue), got {self.hues!r}")
        object.__setattr__(self, "hues", tuple(float(h) for h in self.hues))

    def to_dict(self) -> dict:
        """JSON-serialisable fields (``pitch_band`` as a list)."""
        d = asdict(self)
        d["pitch_band"], d["hues"] = list(self.pitch_band), list(self.hues)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PhotoParams:
        """Inverse of :meth:`to_dict`. Raises ``ValueError``/``TypeError`` on missing or bad fields."""
        return cls(sat_min=float(d["sat_min"]), val_min=float(d["val_min"]), min_area=float(d["min_area"]),
                   rows=float(d["rows"]), unit=str(d["unit"]), pitch_band=tuple(d["pitch_band"]),
                   hues=tuple(d.get("hues", PHOTO_HUES.values())))


def load_photo_params(path: str | Path = PHOTO_PARAMS_FILE) -> PhotoParams:
    """The ``"params"`` of a file written by ``cubeworld calibrate-perceive``.

    Raises:
        OSError: the file cannot be read. ValueError: it holds no valid ``"params"``.
    """
    data = json.loads(Path(path).read_text())
    try:
        return PhotoParams.from_dict(data["params"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} holds no valid 'params' ({exc!r}); rewrite it with "
                         f"'cubeworld calibrate-perceive --out {path}'") from exc


# The first version's settings, developed on the lerer-dev photos (in-sample there).
LEGACY = PhotoParams(sat_min=90 / 255, val_min=30 / 255, min_area=0.004, rows=0.6, unit="pitch",
                     pitch_band=(0.6, 1.2), hues=(0.0, 55.0, 135.0, 225.0))
SHIPPED = load_photo_params()


def segment_photo(rgb: np.ndarray, sat_min: float, val_min: float, min_area: float,
                  hues: tuple[float, ...] = tuple(PHOTO_HUES.values())) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """``(mask, colour)`` of each block of the tower in ``rgb`` (``(H, W, 3)`` uint8): step 1 of the module doc."""
    h, w = rgb.shape[:2]
    hue, sat, val = hsv(rgb)
    colored = (sat > sat_min) & (val > val_min)
    label = nearest_hue(hue, np.array(hues))
    min_px = max(16, int(min_area * h * w))
    blocks = []
    for k, color in enumerate(PHOTO_HUES):
        mask = ndimage.binary_opening(colored & (label == k), structure=np.ones((3, 3), bool))
        blocks += [(comp, color) for comp in components(mask, min_px)]
    if not blocks:
        return []
    union = np.zeros((h, w), bool)
    for b, _ in blocks:
        union |= b
    groups, _ = ndimage.label(ndimage.binary_dilation(union, iterations=3), structure=np.ones((3, 3), bool))
    ids = [np.bincount(groups[b]).argmax() for b, _ in blocks]
    mass = np.bincount(ids, weights=[b.sum() for b, _ in blocks])
    return [blk for blk, g in zip(blocks, ids) if g == int(mass.argmax())]


def measure_blocks(blocks: list[tuple[np.ndarray, tuple[int, int, int]]], rows: float
                   ) -> list[tuple[float, float, float, tuple[int, int, int]]]:
    """``(bottom row, centre column, width, colour)`` per block, pixels, bottom block first (step 2)."""
    measured = []
    for mask, color in blocks:
        ys = np.nonzero(mask.any(1))[0]
        lower = ys[min(len(ys) - 1, int(math.floor((1.0 - rows) * len(ys) + 1e-9))):]
        cols = [np.nonzero(mask[r])[0] for r in lower]
        centres = [(c.min() + c.max() + 1) / 2 for c in cols]
        widths = [c.max() + 1 - c.min() for c in cols]
        measured.append((ys.max() + 1.0, float(np.median(centres)), float(np.median(widths)), color))
    measured.sort(key=lambda m: -m[0])
    return measured


def scene_from_blocks(measured: list[tuple[float, float, float, tuple[int, int, int]]], unit: str,
                      pitch_band: tuple[float, float]) -> Scene | None:
    """The ``top_block`` scene of measured blocks (steps 3-4), or None for fewer than two blocks."""
    if len(measured) < 2:
        return None  # a lone block: nothing to simulate (the fallback "Yes" is the right answer)
    width = float(np.median([m[2] for m in measured]))
    pitch = float(np.median(-np.diff([m[0] for m in measured])))
    lo, hi = pitch_band
    edge = pitch if unit == "pitch" and lo * width <= pitch <= hi * width else width
    if edge <= 0:
        return None
    base = measured[0][1]
    cubes = tuple(Cube((m[1] - base) / edge, 0.0, i + 0.5, 1.0, m[3]) for i, m in enumerate(measured))
    return Scene("top_block", cubes, len(cubes) - 1)


def perceive_photo(rgb: np.ndarray, params: PhotoParams = SHIPPED) -> Scene | None:
    """The ``top_block`` scene seen in a photo (``(H, W, 3)`` uint8), or None when under two blocks are found."""
    blocks = segment_photo(rgb, params.sat_min, params.val_min, params.min_area, params.hues)
    return scene_from_blocks(measure_blocks(blocks, params.rows), params.unit, params.pitch_band) if blocks else None
