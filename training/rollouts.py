"""Rollouts: scenes from the environments, completions from the policy, rewards from the physics.

Never a fixed dataset: every step draws fresh seeded scenes (``reset(seed)``),
samples a group of completions per scene through the agent's generation
backend, and scores each completion with the environment's own reward
(:meth:`envs.tower_env.TowerEnv.judge`, the same code as ``step``).

Multi-step envs (DESIGN.md section 7) run through the same loop, :func:`collect_trajectories`:
a group is ``G`` trajectories from one initial scene. Turn 1 is one prompt sampled ``G``
times (as single-step: prompt sharing holds); every later turn, the still-running
trajectories of the whole batch are generated in one backend call, each from its own
observation (its history included), stepped in its own env, and finished ones drop out.
Each turn keeps the :class:`~agents.backends.base.Completion` exactly as sampled (token
ids and log-probs): the loss sees those ids, never a re-tokenisation of the answer text.
A single-step env is the one-turn case: its ``G`` completions are judged on the one reset
env (``TowerEnv.judge``), so a group costs one reset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from agents.backends.base import Completion, SamplingParams
from envs.rewards import LEGAL_OUTCOMES

__all__ = ["EnvPool", "choose_envs", "LEGAL_OUTCOMES", "Turn", "Trajectory", "collect_trajectories"]


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


@dataclass
class Turn:
    """One turn of a trajectory: the observation the policy saw, what it generated, what it earned.

    Attributes:
        observation: ``{"image", "prompt"}`` (single-step) or ``{"image", "prompt", "history"}``; the
            first turns of one group share one object (so their prompt is scored once).
        completion: as sampled (``token_ids``, ``logprobs``: the loss's tokens, never re-tokenised).
        reward: the env's reward of this turn.
        outcome: its outcome name.
        success: ``info["success"]`` (single-step: the answer was optimal within the env's
            own reward; False where the env does not say).
    """

    observation: dict[str, Any]
    completion: Completion
    reward: float
    outcome: str
    success: bool = False


@dataclass
class Trajectory:
    """One episode played by the policy: its env id, seed, group (scene index) and turns."""

    env_id: str
    seed: int
    group: int
    turns: list[Turn] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    @property
    def success(self) -> bool:
        return any(t.success for t in self.turns)


def _turn_seed(seed: int | None, turn: int) -> int | None:
    """Sampling seed of turn ``turn`` (1-based) of a step: turn 1 keeps the step's (single-step unchanged)."""
    return seed if seed is None or turn == 1 else (seed + 104_729 * (turn - 1)) % (2**31 - 1)


def collect_trajectories(agent: Any, pool: EnvPool, env_ids: list[str], seeds: list[int],
                         params: SamplingParams) -> list[list[Trajectory]]:
    """``P`` groups of ``G = params.n`` trajectories (see the module docstring).

    Args:
        agent: a :class:`agents.VLMAgent` (anything with ``sample(observations, params=...)``).
        pool: where the environments come from (a multi-step group takes ``G`` of them).
        env_ids, seeds: one per scene (group).
        params: sampling settings of turn 1; later turns sample once per trajectory with a
            seed derived from ``params.seed`` and the turn.

    Returns:
        ``P`` lists of ``G`` :class:`Trajectory`, in scene order.

    Raises:
        RuntimeError: a multi-step env still running after its ``max_turns`` steps.
    """
    n = params.n
    first, trajectories, envs_of = [], [], []
    for p, (env_id, seed) in enumerate(zip(env_ids, seeds, strict=True)):
        env = pool.get(env_id, p)
        obs, _ = env.reset(seed=int(seed))
        first.append(obs)
        trajectories.append([Trajectory(env_id, int(seed), p) for _ in range(n)])
        envs_of.append(env)
    groups = agent.sample(first, params=params)
    running = []  # (p, g, env, observation) of trajectories that go on
    for p, group in enumerate(groups):
        env = envs_of[p]
        multi = getattr(env.unwrapped, "interaction", "single") != "single"
        for g, completion in enumerate(group):
            if not multi:
                reward, info = env.unwrapped.judge(completion.text)
                trajectories[p][g].turns.append(Turn(first[p], completion, float(reward), info["outcome"],
                                                     bool(info.get("success", False))))
                continue
            # Trajectory g > 0 of a multi-step group plays in its own env, reset on the same seed.
            own = env if g == 0 else pool.get(env_ids[p], len(env_ids) * (1 + g) + p)
            if g > 0:
                own.reset(seed=int(seeds[p]))
            running.append(_advance(trajectories[p][g], own, first[p], completion))
    running = [r for r in running if r is not None]
    turn = 1
    while running:
        turn += 1
        limit = max(int(env.unwrapped.max_turns) for _, env, _ in running)
        if turn > limit:
            raise RuntimeError(f"multi-step episodes still running after {limit} turns; an env must end every "
                               "episode by its max_turns-th step")
        step_params = dataclasses.replace(params, n=1, seed=_turn_seed(params.seed, turn))
        sampled = agent.sample([obs for _, _, obs in running], params=step_params)
        running = [_advance(traj, env, obs, group[0]) for (traj, env, obs), group in zip(running, sampled)]
        running = [r for r in running if r is not None]
    return trajectories


def _advance(trajectory: Trajectory, env: gym.Env, observation: dict[str, Any], completion: Completion):
    """Step ``env`` with ``completion``; record the turn; ``(trajectory, env, next observation)`` or None if done."""
    obs, reward, terminated, truncated, info = env.step(completion.text)
    trajectory.turns.append(Turn(observation, completion, float(reward), info["outcome"], bool(info["success"])))
    return None if (terminated or truncated) else (trajectory, env, obs)
