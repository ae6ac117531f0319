"""``cubeworld demo``: example images of every environment and its two reference scores.

For each env id: PNGs of a few episodes (the observation, and the result of
the optimal answer simulated to rest), then the mean reward over N seeds of a
uniformly random legal answer and of the optimal answer (``info["optimal_action"]``).
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

__all__ = ["DemoRow", "run_demo", "format_table"]


@dataclass(frozen=True)
class DemoRow:
    env_id: str
    random_mean: float
    optimal_mean: float
    n_episodes: int


def _mean_reward(env: gym.Env, answer_of, seeds: range) -> float:
    rewards = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        rewards.append(env.step(answer_of(info))[1])
    return float(np.mean(rewards))


def run_demo(out_dir: str | Path, n_episodes: int = 50, n_images: int = 4, seed: int = 0,
             env_ids: tuple[str, ...] = envs.ENV_IDS) -> list[DemoRow]:
    """Write ``n_images`` example PNG pairs per env to ``out_dir`` and score both reference answers.

    Seeds ``seed .. seed + n_episodes - 1`` are used for both answers; the random
    answers come from ``numpy.random.default_rng(seed)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for env_id in env_ids:
        env = gym.make(env_id, render_mode="rgb_array")
        fmt = env.unwrapped.answer_format
        for k in range(n_images):
            obs, info = env.reset(seed=seed + k)
            env.step(info["optimal_action"])
            for name, pixels in ((f"{env_id}_seed{seed + k}.png", obs["image"]),
                                 (f"{env_id}_seed{seed + k}_optimal_result.png", env.render())):
                with atomic_path(out / name) as tmp:
                    Image.fromarray(pixels).save(tmp, format="PNG")
        seeds = range(seed, seed + n_episodes)
        rng = np.random.default_rng(seed)
        random_mean = _mean_reward(env, lambda info, fmt=fmt, rng=rng: sample_legal_answer(fmt, rng),
                                   seeds)
        optimal_mean = _mean_reward(env, lambda info: info["optimal_action"], seeds)
        rows.append(DemoRow(env_id, random_mean, optimal_mean, n_episodes))
        env.close()
    return rows


def format_table(rows: list[DemoRow]) -> str:
    lines = [f"{'env id':<22} {'random legal':>12} {'optimal':>9} {'episodes':>9}"]
    lines += [f"{r.env_id:<22} {r.random_mean:>12.3f} {r.optimal_mean:>9.3f} {r.n_episodes:>9d}"
              for r in rows]
    return "\n".join(lines)
