"""Rollouts: scenes from the environments, completions from the policy, rewards from the physics.

Never a fixed dataset: every step draws fresh seeded scenes (``reset(seed)``),
samples a group of completions per scene through the agent's generation
backend, and scores each completion with the environment's own reward
(:meth:`envs.tower_env.TowerEnv.judge`, the same code as ``step``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from agents.backends.base import Completion, SamplingParams
from envs.rewards import ILLEGAL_OUTCOMES, LEGAL_OUTCOMES

__all__ = ["RolloutBatch", "EnvPool", "collect_rollouts", "choose_envs", "LEGAL_OUTCOMES"]


@dataclass
class RolloutBatch:
    """One step's rollouts: ``P`` scenes, ``G`` completions each.

    Attributes:
        observations: ``P`` observations ``{"image", "prompt"}``.
        infos: ``P`` reset infos (scene, optimal_action, ...).
        env_ids: ``P`` env ids.
        seeds: ``P`` episode seeds.
        completions: ``P`` lists of ``G`` completions (token ids, backend log-probs).
        rewards: ``(P, G)`` float64 environment rewards.
        outcomes: ``P`` lists of ``G`` outcome names.
    """

    observations: list[dict[str, Any]]
    infos: list[dict[str, Any]]
    env_ids: list[str]
    seeds: list[int]
    completions: list[list[Completion]]
    rewards: np.ndarray
    outcomes: list[list[str]] = field(default_factory=list)

    @property
    def legal(self) -> np.ndarray:
        """``(P, G)`` bool: the answer parsed and was in range."""
        return np.array([[o not in ILLEGAL_OUTCOMES for o in row] for row in self.outcomes], dtype=bool)

    @property
    def completion_lengths(self) -> np.ndarray:
        """``(P, G)`` int: generated tokens per completion."""
        return np.array([[len(c.token_ids) for c in row] for row in self.completions])


class EnvPool:
    """Environments made once and reused (each holds a pybullet client): one per (env id, slot),
    so every scene of a step keeps its own episode open while its group is scored."""

    def __init__(self, env_kwargs: dict[str, Any] | None = None) -> None:
        self._envs: dict[tuple[str, int], gym.Env] = {}
        self._kwargs = env_kwargs or {}

    def get(self, env_id: str, slot: int = 0) -> gym.Env:
        key = (env_id, slot)
        if key not in self._envs:
            self._envs[key] = gym.make(env_id, **self._kwargs)
        return self._envs[key]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def choose_envs(env_id: str, env_mix: dict[str, float] | None, schedule: str, step: int, max_steps: int,
                n: int, rng: np.random.Generator) -> list[str]:
    """Env id of each of ``n`` scenes at ``step`` (the paper's A.9.4 multi-task schedules).

    ``interleaved``: every scene drawn independently with probability proportional
    to its weight. ``blocked``: the run is cut into contiguous blocks, one per env
    in the order given, each as long as its share of ``max_steps``.
    """
    if not env_mix:
        return [env_id] * n
    ids = list(env_mix)
    weights = np.array([env_mix[i] for i in ids], dtype=np.float64)
    weights /= weights.sum()
    if schedule == "blocked":
        edges = np.cumsum(weights) * max_steps
        block = int(np.searchsorted(edges, step, side="right"))
        return [ids[min(block, len(ids) - 1)]] * n
    return [ids[i] for i in rng.choice(len(ids), size=n, p=weights)]


def collect_rollouts(agent: Any, pool: EnvPool, env_ids: list[str], seeds: list[int],
                     params: SamplingParams) -> RolloutBatch:
    """Reset each env on its seed, sample ``params.n`` completions per scene, score every one.

    Args:
        agent: a :class:`agents.VLMAgent` (anything with ``sample(observations, params=...)``).
        pool: where the environments come from.
        env_ids, seeds: one per scene.
        params: sampling settings; ``params.n`` is the group size.
    """
    observations, infos = [], []
    for slot, (env_id, seed) in enumerate(zip(env_ids, seeds, strict=True)):
        obs, info = pool.get(env_id, slot).reset(seed=int(seed))
        observations.append(obs)
        infos.append(info)
    groups = agent.sample(observations, params=params)
    rewards = np.zeros((len(groups), params.n))
    outcomes = []
    for p, (env_id, group) in enumerate(zip(env_ids, groups, strict=True)):
        env = pool.get(env_id, p)
        row = []
        for g, completion in enumerate(group):
            reward, info = env.unwrapped.judge(completion.text)
            rewards[p, g] = reward
            row.append(info["outcome"])
        outcomes.append(row)
    return RolloutBatch(observations, infos, list(env_ids), [int(s) for s in seeds], groups, rewards, outcomes)
