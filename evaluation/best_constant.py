"""The best constant answer per environment: the image-blind shortcut every learning claim must beat.

An agent that ignores the image can still score well by always giving the answer
that is best on average (``<answer>0</answer>`` keeps every stable
``TopBlockXOnly-v0`` tower stable). :func:`best_constant_answer` finds that answer
among a small candidate set (:func:`constant_candidates`), scoring every candidate
with the environment's own reward code (:meth:`envs.tower_env.TowerEnv.judge`) on
the same seeded scenes as an evaluation: one ``reset`` per seed, then every
candidate judged on it. The mean rewards equal those of
``evaluate(ConstantAgent(answer), env_id, n_episodes, seed)`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs.answers import BINARY_LABELS, UP_RANGE, X_RANGE

from .evaluate import bootstrap_ci

__all__ = ["ConstantBaseline", "constant_candidates", "best_constant_answer", "answer_format", "CONSTANT_FORMATS",
           "DEFAULT_X_STEP", "DEFAULT_XY_STEP"]

CONSTANT_FORMATS = ("binary", "true_false", "x", "xy")
"""Answer formats with a best constant answer (not ``colour_x``: its legal colours change per scene)."""

DEFAULT_X_STEP = 25
"""Candidate spacing of x answers, action units (100 = one block edge): 49 candidates over [-600, 600]."""

DEFAULT_XY_STEP = (50, 100)
"""Candidate spacing of (x, up) answers: x every 50, up every 100 units (25 x 11 = 275 candidates)."""


@dataclass(frozen=True)
class ConstantBaseline:
    """The best constant answer of one environment over seeds ``seed .. seed + n_episodes - 1``.

    Attributes:
        answer: the best candidate's text (the first in candidate order on a tie).
        mean_reward: its mean episode reward.
        ci95: 95% bootstrap interval of that mean (:func:`evaluation.evaluate.bootstrap_ci`).
        candidates: every candidate answer text, in order.
        candidate_means: float64, shape ``(len(candidates),)``: mean reward of each candidate.
        rewards: float64, shape ``(n_episodes, len(candidates))``: reward per seed and candidate.
    """

    env_id: str
    seed: int
    n_episodes: int
    answer: str
    mean_reward: float
    ci95: tuple[float, float]
    candidates: tuple[str, ...]
    candidate_means: np.ndarray = field(repr=False)
    rewards: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (candidates with their means; no per-seed rewards)."""
        return {"env_id": self.env_id, "seed": self.seed, "n_episodes": self.n_episodes,
                "answer": self.answer, "mean_reward": self.mean_reward, "ci95": list(self.ci95),
                "candidates": dict(zip(self.candidates, (float(m) for m in self.candidate_means)))}


def _symmetric_grid(step: int, lo: int, hi: int) -> list[int]:
    """0, +-step, +-2 step, ... within [lo, hi], ascending (0 always included)."""
    pos = list(range(0, hi + 1, step))
    neg = [-v for v in range(step, -lo + 1, step)]
    return sorted(neg + pos)


def _check_step(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int (action units; 100 = one block edge), got {value!r}")
    return int(value)


def constant_candidates(answer_format: str, x_step: int = DEFAULT_X_STEP,
                        xy_step: tuple[int, int] = DEFAULT_XY_STEP) -> list[str]:
    """The candidate constant answers (answer texts) of an answer format.

    * ``binary``: ``Yes``, ``No``; ``true_false``: ``True``, ``False``.
    * ``x``: x = 0, +-x_step, +-2 x_step, ... within ``X_RANGE`` ([-600, 600]), ascending.
    * ``xy``: the grid of x (0, +-xy_step[0], ... within ``X_RANGE``) by up
      (0, xy_step[1], ... within ``UP_RANGE`` [0, 1000]), x-major.

    Raises:
        ValueError: unknown ``answer_format`` or a step that is not a positive int.
    """
    if answer_format in BINARY_LABELS:
        return [f"<answer>{label}</answer>" for label in BINARY_LABELS[answer_format]]
    if answer_format == "x":
        step = _check_step("x_step", x_step)
        return [f"<answer>{x}</answer>" for x in _symmetric_grid(step, *X_RANGE)]
    if answer_format == "xy":
        if not isinstance(xy_step, (tuple, list)) or len(xy_step) != 2:
            raise ValueError(f"xy_step must be (x_step, up_step), got {xy_step!r}")
        sx, su = _check_step("xy_step[0]", xy_step[0]), _check_step("xy_step[1]", xy_step[1])
        ups = list(range(UP_RANGE[0], UP_RANGE[1] + 1, su))
        return [f"<answer>{x}, {u}</answer>" for x in _symmetric_grid(sx, *X_RANGE) for u in ups]
    raise ValueError(f"answer_format must be one of {CONSTANT_FORMATS}, got {answer_format!r}")


def _reward_table(env_id: str, seeds: range, candidates: Sequence[str],
                  env_kwargs: Mapping[str, Any] | None) -> np.ndarray:
    env = gym.make(env_id, **dict(env_kwargs or {}))
    try:
        base = env.unwrapped
        judge = getattr(base, "judge", None)
        table = np.zeros((len(seeds), len(candidates)), dtype=np.float64)
        for i, s in enumerate(seeds):
            if judge is not None:
                env.reset(seed=s)
                table[i] = [judge(c)[0] for c in candidates]
            else:  # an environment without judge(): one episode per candidate
                for j, c in enumerate(candidates):
                    env.reset(seed=s)
                    table[i, j] = env.step(c)[1]
        return table
    finally:
        env.close()


def answer_format(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> str | None:
    """The answer format of ``env_id`` (``info["answer_format"]`` at reset): ``"binary"``, ``"true_false"``, ``"x"``,
    ``"xy"``, ``"colour_x"`` (TowerBuild-v0, where no constant answer applies: the colours differ
    per scene), or None when the env does not say."""
    env = gym.make(env_id, **dict(env_kwargs or {}))
    try:
        _, info = env.reset(seed=0)
        return info.get("answer_format", getattr(env.unwrapped, "answer_format", None))
    finally:
        env.close()


def _answer_format(env_id: str, env_kwargs: Mapping[str, Any] | None) -> str:
    fmt = answer_format(env_id, env_kwargs)
    if fmt not in CONSTANT_FORMATS:
        raise ValueError(f"cannot tell the answer format of {env_id!r} (reset info has answer_format={fmt!r}); "
                         "pass candidates= explicitly")
    return fmt


def best_constant_answer(
    env_id: str,
    n_episodes: int = 256,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
    x_step: int = DEFAULT_X_STEP,
    xy_step: tuple[int, int] = DEFAULT_XY_STEP,
    env_kwargs: Mapping[str, Any] | None = None,
) -> ConstantBaseline:
    """The constant answer with the highest mean reward on seeds ``seed .. seed + n_episodes - 1``.

    Cost: ``n_episodes`` resets plus ``n_episodes * len(candidates)`` judgements
    (about 3 ms each where the answer is simulated; 256 seeds x 49 x-candidates
    take about 40 s on one CPU core).

    Args:
        env_id: a registered id (``RealTowerStability-v0`` with ``env_kwargs``).
        candidates: answer texts to try; default :func:`constant_candidates` of the env's format.
        x_step, xy_step: spacing of the default candidates (see :func:`constant_candidates`).
        env_kwargs: passed to ``gym.make``.

    Raises:
        gymnasium.error.Error: unknown ``env_id`` (Gymnasium names close matches).
        ValueError: ``n_episodes`` < 1, empty ``candidates``, or a bad step.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an int >= 1, got {n_episodes!r}")
    gym.spec(env_id)  # unknown id: Gymnasium's error, with close matches, before any work
    if candidates is None:
        candidates = constant_candidates(_answer_format(env_id, env_kwargs), x_step, xy_step)
    candidates = tuple(candidates)
    if not candidates:
        raise ValueError("candidates is empty; give at least one answer text such as '<answer>0</answer>'")
    seeds = range(seed, seed + int(n_episodes))
    table = _reward_table(env_id, seeds, candidates, env_kwargs)
    # Column by column, contiguous: the same summation as evaluate()'s mean, to the last bit.
    means = np.array([np.ascontiguousarray(table[:, j]).mean() for j in range(len(candidates))])
    best = int(np.argmax(means))
    return ConstantBaseline(env_id=env_id, seed=seed, n_episodes=int(n_episodes), answer=candidates[best],
                            mean_reward=float(means[best]), ci95=bootstrap_ci(table[:, best], seed=seed),
                            candidates=candidates, candidate_means=means, rewards=table)
