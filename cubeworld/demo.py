"""``cubeworld demo``: example images of every environment and its two reference scores.

For each env id: PNGs of a few episodes (the observation, and the result of
the optimal answer simulated to rest), then the mean reward over N seeds of a
uniformly random legal answer and of the optimal answer (``info["optimal_action"]``).
For the multi-step ids (``envs.MULTI_STEP_ENV_IDS``) the scores are mean returns
(the answer given every turn, the optimal one read from the latest info), and two
episode strips per id (:func:`evaluation.strips.trajectory_strip`) show one episode
of the oracle and one of a random agent, turn by turn. ``style`` and ``randomise`` (DESIGN.md
section 9, :mod:`envs.styles`) reach every env; the first observations of every id also go into
one grid PNG (:func:`style_grid`), a row per id, to show what a style and its randomisation make.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

import envs
from envs.answers import sample_legal_answer
from envs.atomic import atomic_path

__all__ = ["DemoRow", "run_demo", "format_table", "default_env_ids", "style_grid", "grid_name", "style_sheet",
           "write_style_sheet"]

GRID_TILE = 128  # pixels per image in the grid PNG


@dataclass(frozen=True)
class DemoRow:
    env_id: str
    random_mean: float
    optimal_mean: float
    n_episodes: int
    interaction: str = "single"


def default_env_ids() -> tuple[str, ...]:
    """The ids ``cubeworld demo`` covers: the single-step tasks, the multi-step ones, then the worlds."""
    return tuple(envs.ENV_IDS) + tuple(envs.MULTI_STEP_ENV_IDS) + tuple(envs.WORLD_ENV_IDS)


def _mean_return(env: gym.Env, answer_of, seeds: range) -> float:
    """Mean undiscounted return; ``answer_of(info)`` answers each turn from the latest info."""
    returns = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(answer_of(info))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def _save_png(pixels: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _write_strips(env: gym.Env, env_id: str, seed: int, out: Path) -> None:
    """One episode strip of the oracle and one of a random agent (seeded ``seed``), seed ``seed``."""
    from agents.baselines import OracleAgent, RandomAgent
    from evaluation.strips import record_episode, trajectory_strip

    for name, agent in (("oracle", OracleAgent()), ("random", RandomAgent(seed=seed))):
        turns, final = record_episode(env, agent, seed)
        _save_png(trajectory_strip(turns, final_image=final), out / f"{env_id}_seed{seed}_{name}_episode.png")


def grid_name(style: str = "plain", randomise: bool = False) -> str:
    """The grid PNG's file name: ``grid_{style}.png``, ``grid_{style}_randomised.png`` with randomisation."""
    return f"grid_{style}{'_randomised' if randomise else ''}.png"


def style_grid(rows: list[list[np.ndarray]], tile: int = GRID_TILE) -> np.ndarray:
    """Images laid out row by row, each resized to ``tile`` x ``tile`` pixels (bilinear, PIL), white
    where a row is short: ``(len(rows) * tile, max row length * tile, 3)`` uint8.

    Raises:
        ValueError: no images, or a tile below 8 pixels.
    """
    width = max((len(r) for r in rows), default=0)
    if width == 0 or tile < 8:
        raise ValueError(f"style_grid needs at least one image and tile >= 8, got {width} columns and tile={tile}")
    grid = np.full((len(rows) * tile, width * tile, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            small = Image.fromarray(image).resize((tile, tile), Image.Resampling.BILINEAR)
            grid[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] = np.asarray(small.convert("RGB"))
    return grid


# The ids of the style sheet: one scene of each family.
SHEET_IDS = ("TopBlockStability-v0", "SideBlockXY-v0", "TowerBuild-v0", "TowerStability-v0",
             "PyramidCounterfactual-v0", "ShapeStacksStability-v0")


def style_sheet(env_ids: tuple[str, ...] = SHEET_IDS, seed: int = 0, draws: int = 3) -> np.ndarray:
    """One scene per id (seed ``seed``) per row: plain, lerer, then ``draws`` lerer looks under
    ``randomise=True`` (the scene replayed with seeds ``seed + 1 ..``), as :func:`style_grid`."""
    rows = []
    for env_id in env_ids:
        obs, info = gym.make(env_id).reset(seed=seed)
        row = [obs["image"], gym.make(env_id, style="lerer").reset(seed=seed)[0]["image"]]
        styled = gym.make(env_id, style="lerer", randomise=True)
        row += [styled.reset(seed=seed + 1 + k, options={"scene": info["scene"]})[0]["image"] for k in range(draws)]
        rows.append(row)
    return style_grid(rows)


def write_style_sheet(path: str | Path, **kwargs) -> None:
    """Save :func:`style_sheet` (``kwargs``) as a PNG: the README's ``docs/styles.png``, 283 KB at three draws."""
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(style_sheet(**kwargs)).save(tmp, format="PNG", optimize=True)


def run_demo(out_dir: str | Path, n_episodes: int = 50, n_images: int = 4, seed: int = 0,
             env_ids: tuple[str, ...] | None = None, style: str = "plain",
             randomise: bool | dict[str, float] = False) -> list[DemoRow]:
    """Write ``n_images`` example PNG pairs per env to ``out_dir`` and score both reference answers.

    Seeds ``seed .. seed + n_episodes - 1`` are used for both answers; the random
    answers come from ``numpy.random.default_rng(seed)``. ``env_ids`` defaults to
    :func:`default_env_ids`. Multi-step ids also get ``{id}_seed{seed}_oracle_episode.png``
    and ``{id}_seed{seed}_random_episode.png`` (episode strips), and score mean returns. Every env is
    made with ``style`` and ``randomise``; the observations shown go into :func:`grid_name`
    (:func:`style_grid`, a row per id).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, grid = [], []
    # Only a styled demo passes the kwargs: an id of another class (the real photos) takes none.
    look = {} if style == "plain" and not randomise else {"style": style, "randomise": randomise}
    for env_id in default_env_ids() if env_ids is None else env_ids:
        env = gym.make(env_id, render_mode="rgb_array", **look)
        grid.append([])
        fmt = env.unwrapped.answer_format
        interaction = getattr(env.unwrapped, "interaction", "single")
        for k in range(n_images):
            obs, info = env.reset(seed=seed + k)
            env.step(info["optimal_action"])
            _save_png(obs["image"], out / f"{env_id}_seed{seed + k}.png")
            grid[-1].append(obs["image"])
            _save_png(env.render(), out / f"{env_id}_seed{seed + k}_optimal_result.png")
        if interaction != "single":
            _write_strips(env, env_id, seed, out)
        seeds = range(seed, seed + n_episodes)
        rng = np.random.default_rng(seed)
        random_mean = _mean_return(env, lambda info, fmt=fmt, rng=rng: sample_legal_answer(fmt, rng), seeds)
        optimal_mean = _mean_return(env, lambda info: info["optimal_action"], seeds)
        rows.append(DemoRow(env_id, random_mean, optimal_mean, n_episodes, interaction))
        env.close()
    if any(grid):
        _save_png(style_grid(grid), out / grid_name(style, bool(randomise)))
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """Rows as a text table; multi-step rows are mean returns, marked with their interaction."""
    width = max([len("env id")] + [len(r.env_id) for r in rows])
    lines = [f"{'env id':<{width}} {'interaction':>11} {'random legal':>12} {'optimal':>9} {'episodes':>9}"]
    lines += [f"{r.env_id:<{width}} {r.interaction:>11} {r.random_mean:>12.3f} {r.optimal_mean:>9.3f} "
              f"{r.n_episodes:>9d}" for r in rows]
    if any(r.interaction != "single" for r in rows):
        lines.append("(multi-step ids: mean return per episode, the answer given every turn)")
    return "\n".join(lines)
