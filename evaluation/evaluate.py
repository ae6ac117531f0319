"""``evaluate()``: run an agent on seeded episodes of one environment and summarise the rewards."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from agents.backends.base import EVAL_BATCH_SIZE
from agents.base import Agent, decoding_of
from envs.atomic import write_json_atomic
from envs.rewards import ILLEGAL_OUTCOMES

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci", "describe_decoding", "json_default"]


@dataclass(frozen=True)
class EpisodeRecord:
    """One scored episode. ``reward`` is the environment's own reward for ``answer``."""

    seed: int
    answer: str
    reward: float
    outcome: str
    parsed_action: Any = None
    distance: float | None = None
    stable_initially: bool | None = None
    offset: float | None = None
    n_blocks: int | None = None


@dataclass
class EvaluationResult:
    """Summary of ``n_episodes`` episodes on seeds ``seed .. seed + n_episodes - 1``.

    Attributes:
        mean_reward: mean episode reward.
        ci95: 95% bootstrap interval of the mean (:func:`bootstrap_ci`).
        legal_rate: fraction of answers that parsed and were in range.
        legal_mean_reward: mean reward over legal answers (None if there were none).
        accuracy: fraction ``correct`` (binary tasks; None otherwise).
        outcome_counts: episodes per outcome name.
        episodes: the per-episode records.
        agent: the agent's name or spec.
        decoding: how the agent produced its answers (:func:`agents.base.decoding_of`:
            e.g. ``{"greedy": False, "temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
            "max_new_tokens": 64, "n": 1, "seed": 0}``), plus ``"batch_size"``; None for
            agents without a model.
    """

    env_id: str
    n_episodes: int
    seed: int
    mean_reward: float
    ci95: tuple[float, float]
    legal_rate: float
    legal_mean_reward: float | None
    accuracy: float | None
    outcome_counts: dict[str, int]
    episodes: list[EpisodeRecord] = field(default_factory=list)
    agent: str = ""
    decoding: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        data = dict(data)
        data["ci95"] = tuple(data["ci95"])
        data["episodes"] = [EpisodeRecord(**e) for e in data.get("episodes", [])]
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON to ``path`` atomically (:func:`envs.atomic.write_json_atomic`)."""
        write_json_atomic(path, self.to_dict(), indent=1, default=json_default)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """A small readable table of the headline numbers."""
        rows = [
            ("env", self.env_id),
            ("agent", self.agent or "-"),
            ("episodes", f"{self.n_episodes} (seeds {self.seed}..{self.seed + self.n_episodes - 1})"),
            ("mean reward", f"{self.mean_reward:.3f}  95% CI [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}]"),
            ("decoding", describe_decoding(self.decoding)),
            ("legal answers", f"{self.legal_rate:.3f}"),
            ("mean reward, legal", "-" if self.legal_mean_reward is None else f"{self.legal_mean_reward:.3f}"),
        ]
        if self.accuracy is not None:
            rows.append(("accuracy", f"{self.accuracy:.3f}"))
        rows.append(("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(self.outcome_counts.items()))))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def describe_decoding(decoding: dict[str, Any] | None) -> str:
    """One readable line for a ``"decoding"`` record (``-`` for agents without a model)."""
    if not decoding:
        return "-"
    if decoding.get("method"):
        return str(decoding["method"])
    head = ("greedy" if decoding.get("greedy") else
            f"temperature {decoding.get('temperature'):g}, top_p {decoding.get('top_p'):g}, "
            f"min_p {decoding.get('min_p', 0.0):g}")
    tail = f", <= {decoding['max_new_tokens']} new tokens" if "max_new_tokens" in decoding else ""
    tail += f", seed {decoding['seed']}" if decoding.get("seed") is not None else ""
    tail += f", batch {decoding['batch_size']}" if decoding.get("batch_size") else ""
    return head + tail


def json_default(value: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars as Python numbers, tuples as lists.

    Raises:
        TypeError: ``value`` is of any other type (as ``json`` expects of a ``default``).
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def bootstrap_ci(values: np.ndarray, seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, by ``scipy.stats.bootstrap`` (9,999 resamples).

    All-equal values give the degenerate interval ``(v, v)``.

    Raises:
        ImportError: scipy is missing (``pip install 'cubeworld[train]'``).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    if np.ptp(values) == 0:
        return (float(values[0]), float(values[0]))
    try:
        from scipy.stats import bootstrap
    except ImportError as exc:  # pragma: no cover - scipy ships with the train extra
        raise ImportError("bootstrap intervals need scipy: pip install 'cubeworld[train]'") from exc
    res = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=9999,
                    method="percentile", rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def evaluate(
    agent: Agent,
    env_id: str,
    n_episodes: int = 100,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Run ``agent`` on episodes of ``env_id`` with seeds ``seed .. seed + n_episodes - 1``.

    Observations reach ``agent.act`` in batches of ``batch_size`` (default
    :data:`agents.backends.base.EVAL_BATCH_SIZE`; a seeded VLM agent re-seeds every
    call, so the batch size is part of the decoding and is recorded with it), each with the
    key ``"info"`` added: the episode's ``reset`` info (see :mod:`agents.base`).
    The environment scores every answer, so rewards are exactly the training rewards.

    Raises:
        gymnasium.error.Error: unknown ``env_id`` (Gymnasium names close matches).
        ValueError: ``n_episodes`` or ``batch_size`` < 1, or the agent returned a
            different number of answers than observations.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pool = [gym.make(env_id, **(env_kwargs or {})) for _ in range(min(batch_size, n_episodes))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_episodes, desc=env_id, unit="ep")
    records: list[EpisodeRecord] = []
    try:
        for start in range(seed, seed + n_episodes, batch_size):
            seeds = list(range(start, min(start + batch_size, seed + n_episodes)))
            observations = []
            for env, s in zip(pool, seeds):
                obs, info = env.reset(seed=s)
                observations.append({**obs, "info": info})
            answers = list(agent.act(observations))
            if len(answers) != len(observations):
                raise ValueError(
                    f"{type(agent).__name__}.act returned {len(answers)} answers for "
                    f"{len(observations)} observations; it must return one per observation"
                )
            for env, s, answer in zip(pool, seeds, answers):
                _, reward, _, _, info = env.step(answer)
                records.append(EpisodeRecord(
                    seed=s, answer=answer if isinstance(answer, str) else repr(answer),
                    reward=float(reward), outcome=info["outcome"],
                    parsed_action=list(info["parsed_action"]) if isinstance(info["parsed_action"], tuple)
                    else info["parsed_action"],
                    distance=info["distance"], stable_initially=info["stable_initially"],
                    offset=info["offset"], n_blocks=info["n_blocks"],
                ))
            if bar is not None:
                bar.update(len(seeds))
    finally:
        if bar is not None:
            bar.close()
        for env in pool:
            env.close()
    binary = getattr(pool[0].unwrapped, "answer_format", None) == "binary"
    result = summarise(records, env_id, seed, binary=binary, agent_name=type(agent).__name__)
    decoding = decoding_of(agent)
    result.decoding = None if decoding is None else {**decoding, "batch_size": batch_size}
    return result


def summarise(records: list[EpisodeRecord], env_id: str, seed: int, binary: bool,
              agent_name: str = "") -> EvaluationResult:
    """Build an :class:`EvaluationResult` from episode records (``binary``: report accuracy)."""
    rewards = np.array([r.reward for r in records])
    legal = [r for r in records if r.outcome not in ILLEGAL_OUTCOMES]
    counts = Counter(r.outcome for r in records)
    return EvaluationResult(
        env_id=env_id,
        n_episodes=len(records),
        seed=seed,
        mean_reward=float(rewards.mean()),
        ci95=bootstrap_ci(rewards, seed=seed),
        legal_rate=len(legal) / len(records),
        legal_mean_reward=float(np.mean([r.reward for r in legal])) if legal else None,
        accuracy=counts["correct"] / len(records) if binary else None,
        outcome_counts=dict(counts),
        episodes=records,
        agent=agent_name,
    )
