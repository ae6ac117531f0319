"""Choose the perceive agent's photo constants on lerer-style renders with known ground truth.

``cubeworld calibrate-perceive --out agents/data/perceive_photo.json`` (or
``python -m agents.perceive_calibration --out ...``) reproduces the shipped
:data:`agents.perceive_photo.SHIPPED` from renders alone; no photo is read.

Data: seeds ``seed .. seed + n - 1`` of each of ``TopBlockStability-v0`` (unit cubes stacked
square, the top one offset in x: its offsets are the ground truth of the pipeline's measurement)
and ``TowerStability-v0`` with ``n_blocks=(2, 4)`` (cubes of edge 0.6-0.9, turned and offset in x
and in depth, as some photo towers are: the cases the unit and rows settings are about), both with
``style="lerer"`` and ``randomise=True`` (camera, light, paint, backdrop, blur, noise and JPEG drawn per scene;
:mod:`envs.styles`). Each scene is replayed (``reset(seed=s, options={"scene": ...})``, which keeps
the seed's look) with its cubes recoloured to distinct colours among the Lerer photos' four (red,
yellow, green, blue, in an order drawn from ``default_rng(s)``): the pipeline knows only those four,
as the photos show only them. The image goes through the photo pipeline
(:func:`agents.perceive_photo.perceive_photo`; a lerer render is not the plain room, so the agent
takes the same path), and the rebuilt scene is simulated by :class:`envs.physics.World`, as the agent
does. Ground truth: ``info["stable_initially"]`` and the cubes' ``x`` of ``info["scene"]``.

Grid (:data:`GRID`; every combination, 288): saturation threshold, value threshold, minimum
area, rows fraction, and the unit with its pitch band (``("width", None)`` or
``("pitch", (lo, hi))``). The reference hues are not searched (the lerer paints' hues,
:data:`agents.perceive_photo.PHOTO_HUES`).

Criterion: the highest stability accuracy over the renders of both families (the agent's answer: the rebuilt scene
simulated, "stable" when perception fails, as the agent's fallback "Yes"); ties broken by the lower
mean absolute error of the top cube's recovered offset from the cube below over the
``TopBlockStability-v0`` renders (block edges; a scene whose cube count is wrong scores an error of
1 edge), then by grid order.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.atomic import write_text_atomic
from envs.physics import World
from envs.scenes import Scene

from .perceive_photo import (
    PHOTO_HUES,
    PHOTO_PARAMS_FILE,
    PhotoParams,
    measure_blocks,
    scene_from_blocks,
    segment_photo,
)

__all__ = ["GRID", "CalibrationResult", "render_set", "calibrate", "main"]

# (env id, gym.make kwargs besides the style): the two families of the calibration set.
ENVS: tuple[tuple[str, dict], ...] = (("TopBlockStability-v0", {}), ("TowerStability-v0", {"n_blocks": (2, 4)}))
GRID: dict[str, tuple] = {
    "sat_min": (60 / 255, 90 / 255, 120 / 255),
    "val_min": (30 / 255, 60 / 255),
    "min_area": (0.002, 0.004, 0.008),
    "rows": (0.4, 0.6, 0.8, 1.0),
    "unit": (("width", None), ("pitch", (0.5, 1.5)), ("pitch", (0.6, 1.2)), ("pitch", (0.8, 1.0))),
}
MISCOUNT_ERROR = 1.0  # block edges: the offset error charged when the cube count is wrong
DEFAULT_N, DEFAULT_SEED = 200, 0  # cubeworld.cli_real repeats these defaults


@dataclass
class Sample:
    """One calibration render: ``image`` ``(H, W, 3)`` uint8, ``stable`` truth, cube ``xs`` (block edges;
    None for ``TowerStability-v0``, whose cubes' sizes differ, so offsets are not scored)."""

    env_id: str
    seed: int
    image: np.ndarray
    stable: bool
    xs: tuple[float, ...] | None


@dataclass
class CalibrationResult:
    """The chosen :class:`PhotoParams` and every grid point's score.

    Attributes:
        params: the chosen setting. accuracy, offset_error: its scores on the renders.
        table: per grid point (grid order) ``{"params", "accuracy", "offset_error"}``.
        recipe: what reproduces it (env, style, randomise, n, seed, grid, criterion).
    """

    params: PhotoParams
    accuracy: float
    offset_error: float
    table: list[dict] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"params": self.params.to_dict(), "accuracy": self.accuracy, "offset_error": self.offset_error,
                "recipe": self.recipe, "table": self.table}

    def summary(self, top: int = 5) -> str:
        rows = sorted(self.table, key=lambda r: (-r["accuracy"], r["offset_error"]))[:top]
        envs = " and ".join(e for e, _ in self.recipe["envs"])
        lines = [f"calibrated on {self.recipe['renders']} renders of {envs} (style lerer, randomised, "
                 f"first seed {self.recipe['seed']}): accuracy {self.accuracy:.3f}, top-cube offset error "
                 f"{self.offset_error:.3f} edges",
                 f"chosen: {self.params}", f"best {top} of {len(self.table)}:"]
        lines += [f"  {r['accuracy']:.3f}  {r['offset_error']:.3f}  {r['params']}" for r in rows]
        return "\n".join(lines)


def render_set(n: int, seed: int = DEFAULT_SEED) -> list[Sample]:
    """The ``2 n`` calibration renders: seeds ``seed..seed+n-1`` of each of :data:`ENVS` (module docstring).

    Raises:
        ValueError: ``n < 1``.
    """
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids

    if n < 1:
        raise ValueError(f"n must be at least 1 render, got {n}")
    four = list(PHOTO_HUES)
    out = []
    for env_id, kwargs in ENVS:
        env = gym.make(env_id, style="lerer", randomise=True, **kwargs)
        try:
            for s in range(seed, seed + n):
                _, info = env.reset(seed=s)
                scene = dict(info["scene"])
                order = np.random.default_rng(s).permutation(len(four))
                scene["cubes"] = [{**c, "color": list(four[order[i]])} for i, c in enumerate(scene["cubes"])]
                obs, info = env.reset(seed=s, options={"scene": scene})
                xs = tuple(float(c["x"]) for c in info["scene"]["cubes"]) if env_id == ENVS[0][0] else None
                out.append(Sample(env_id, s, obs["image"], bool(info["stable_initially"]), xs))
        finally:
            env.close()
    return out


def _grid_points(grid: Mapping[str, Sequence]) -> list[PhotoParams]:
    points = []
    for sat, val, area, rows, (unit, band) in itertools.product(
            grid["sat_min"], grid["val_min"], grid["min_area"], grid["rows"], grid["unit"]):
        points.append(PhotoParams(sat_min=sat, val_min=val, min_area=area, rows=rows, unit=unit,
                                  pitch_band=band or (0.6, 1.2)))
    return points


def _offset_error(scene: Scene | None, xs: tuple[float, ...] | None) -> float:
    if xs is None:
        return np.nan
    if scene is None or len(scene.cubes) != len(xs):
        return MISCOUNT_ERROR
    return abs((scene.cubes[-1].x - scene.cubes[-2].x) - (xs[-1] - xs[-2]))


def calibrate(n: int = DEFAULT_N, seed: int = DEFAULT_SEED, grid: Mapping[str, Sequence] = GRID,
              samples: Sequence[Sample] | None = None) -> CalibrationResult:
    """Score every grid point on the calibration renders and choose by the module's criterion.

    Args:
        n, seed: the renders (:func:`render_set`); ignored when ``samples`` is given.
        grid: candidate values per constant, keys as :data:`GRID`.
        samples: precomputed renders (tests reuse them).

    Returns:
        A :class:`CalibrationResult`. Deterministic: same arguments, same result.

    Raises:
        ValueError: a grid key is missing or empty, or ``n < 1``.
    """
    missing = [k for k in GRID if not grid.get(k)]
    if missing:
        raise ValueError(f"grid needs a non-empty tuple for each of {list(GRID)}; missing or empty: {missing}")
    samples_given = samples
    samples = list(samples) if samples is not None else render_set(n, seed)
    points = _grid_points(grid)
    correct = np.zeros((len(points), len(samples)))
    error = np.zeros((len(points), len(samples)))
    world, verdicts = World(), {}  # verdicts: the simulator's answer per distinct rebuilt scene

    def stands(scene: Scene | None) -> bool:
        if scene is None:
            return True  # the agent's fallback "Yes"
        key = tuple(c.x for c in scene.cubes)
        if key not in verdicts:
            world.load(scene)
            verdicts[key] = world.settle().stable
        return verdicts[key]

    for j, sample in enumerate(samples):
        segmented, measured = {}, {}
        for i, p in enumerate(points):
            seg_key = (p.sat_min, p.val_min, p.min_area)
            if seg_key not in segmented:
                segmented[seg_key] = segment_photo(sample.image, *seg_key, p.hues)
            if (seg_key, p.rows) not in measured:
                measured[seg_key, p.rows] = measure_blocks(segmented[seg_key], p.rows)
            blocks = measured[seg_key, p.rows]
            scene = scene_from_blocks(blocks, p.unit, p.pitch_band) if blocks else None
            correct[i, j] = stands(scene) == sample.stable
            error[i, j] = _offset_error(scene, sample.xs)
    acc = correct.mean(1)
    err = np.nanmean(error, 1) if any(s.xs is not None for s in samples) else np.zeros(len(points))
    best = min(range(len(points)), key=lambda i: (-acc[i], err[i], i))
    table = [{"params": p.to_dict(), "accuracy": float(a), "offset_error": float(e)}
             for p, a, e in zip(points, acc, err)]
    recipe = {"envs": [[e, {k: list(v) for k, v in kw.items()}] for e, kw in ENVS], "style": "lerer",
              "randomise": True, "n": n if samples_given is None else None, "renders": len(samples), "seed": seed, "recolour": "distinct red/yellow/green/blue",
              "grid": {k: list(v) for k, v in grid.items()},
              "criterion": "max stability accuracy; ties: min top-cube offset error; then grid order",
              "command": f"cubeworld calibrate-perceive --n {n} --seed {seed} --out FILE"}
    return CalibrationResult(points[best], float(acc[best]), float(err[best]), table, recipe)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (shared by ``cubeworld calibrate-perceive`` and ``python -m``)."""
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"renders per env (default: {DEFAULT_N})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first seed (default: {DEFAULT_SEED})")
    parser.add_argument("--out", default=None, metavar="FILE.json",
                        help=f"write the chosen constants and the table here (the shipped file: {PHOTO_PARAMS_FILE})")


def run(args: Any) -> int:
    """Calibrate, print the summary, write ``args.out`` if given."""
    if args.n < 1:
        print(f"calibrate-perceive: error: --n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    result = calibrate(args.n, args.seed)
    print(result.summary())
    if args.out:
        write_text_atomic(args.out, json.dumps(result.to_dict(), indent=1) + "\n")  # a crash leaves the old file
        print(f"written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.perceive_calibration [--n N] [--seed S] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m agents.perceive_calibration", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
