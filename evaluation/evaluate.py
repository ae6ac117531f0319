"""``evaluate()``: run an agent on seeded episodes of one environment and summarise the rewards."""

from __future__ import annotations

import json
import math
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
from envs.answers import BINARY_LABELS
from envs.atomic import write_json_atomic
from envs.rewards import ILLEGAL_OUTCOMES

from .episodes import episode_metrics

__all__ = ["evaluate", "EvaluationResult", "EpisodeRecord", "bootstrap_ci", "describe_decoding", "json_default",
           "summarise", "summarise_multi_step", "MULTI_STEP_KEYS", "TURN_KEYS"]


# Keys present only in multi-step results; single-step JSON omits them, so its files stay as before.
MULTI_STEP_KEYS = ("success_at_k", "auccess", "reward_by_attempt", "episodes_by_attempt", "mean_return",
                   "improvement", "mean_attempts_to_success", "max_turns", "interaction")
EPISODE_MULTI_STEP_KEYS = ("turns", "success", "n_turns")
# Keys of the worlds of DESIGN.md section 8, left out of a record's JSON when None (other ids' files keep theirs).
EPISODE_WORLD_KEYS = ("falls", "difficulty", "difficulty_level")
TURN_KEYS = ("answer", "reward", "outcome", "success", "parsed_action", "distance")


@dataclass(frozen=True)
class EpisodeRecord:
    """One scored episode. ``reward`` is the environment's own reward for ``answer``.

    Multi-step episodes (DESIGN.md section 7) also carry ``turns``: one dict per turn,
    oldest first, with :data:`TURN_KEYS` (``answer``, ``reward``, ``outcome``, ``success``,
    ``parsed_action``, ``distance``), plus ``success`` (some turn succeeded) and ``n_turns``.
    Then ``answer``, ``outcome``, ``parsed_action`` and ``distance`` are the last turn's,
    ``reward`` is the episode's undiscounted return (sum of turn rewards), and
    ``stable_initially``, ``offset``, ``n_blocks`` describe the initial scene. Single-step
    records leave the three None. Episodes of DESIGN.md section 8's worlds also carry
    ``falls`` (the question's simulated truth: for a counterfactual, whether the rest falls),
    ``difficulty`` (block edges between the centre-of-mass rule and its threshold) and, where
    the world has levels, ``difficulty_level``; others leave them None.
    """

    seed: int
    answer: str
    reward: float
    outcome: str
    parsed_action: Any = None
    distance: float | None = None
    stable_initially: bool | None = None
    offset: float | None = None
    n_blocks: int | None = None
    turns: list[dict[str, Any]] | None = None
    success: bool | None = None
    n_turns: int | None = None
    falls: bool | None = None
    difficulty: float | None = None
    difficulty_level: str | None = None

    @property
    def truth_falls(self) -> bool | None:
        """The binary question's truth as "falls": ``falls`` where the world records it, else
        ``not stable_initially`` (None when neither is known)."""
        if self.falls is not None:
            return self.falls
        return None if self.stable_initially is None else not self.stable_initially


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

    Multi-step envs (``interaction`` not ``"single"``; metrics of :mod:`evaluation.episodes`):
    ``mean_reward`` is the mean return and ``ci95`` its interval; ``legal_rate``,
    ``legal_mean_reward`` and ``outcome_counts`` count turns, not episodes; ``accuracy`` is
    None. The fields below are None for single-step results (and absent from their JSON):

    Attributes:
        success_at_k: ``max_turns`` floats: fraction of episodes solved within k turns.
        auccess: PHYRE's AUCCESS of ``success_at_k`` (:func:`evaluation.episodes.auccess`).
        reward_by_attempt: ``max_turns`` mean rewards of turn k (None where no episode got there).
        episodes_by_attempt: ``max_turns`` counts of episodes that made a k-th turn.
        mean_return: mean undiscounted episode return (equals ``mean_reward``).
        improvement: mean of last-turn minus first-turn reward (:func:`evaluation.episodes.improvement`).
        mean_attempts_to_success: mean turn of the first success over solved episodes (None: none).
        max_turns: the env's K.
        interaction: ``"retry"``, ``"sequential"`` or ``"build"``.
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
    success_at_k: list[float] | None = None
    auccess: float | None = None
    reward_by_attempt: list[float | None] | None = None
    episodes_by_attempt: list[int] | None = None
    mean_return: float | None = None
    improvement: float | None = None
    mean_attempts_to_success: float | None = None
    max_turns: int | None = None
    interaction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; single-step results omit :data:`MULTI_STEP_KEYS`, and records their None
        :data:`EPISODE_WORLD_KEYS` (files of the other ids keep their keys)."""
        data = asdict(self)
        if self.interaction is None:
            for key in MULTI_STEP_KEYS:
                del data[key]
        for episode in data["episodes"]:
            if episode["turns"] is None:
                for key in EPISODE_MULTI_STEP_KEYS:
                    del episode[key]
            for key in EPISODE_WORLD_KEYS:
                if episode[key] is None:
                    del episode[key]
        return data

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
        multi = self.interaction is not None
        turns = ", per turn" if multi else ""
        rows = [
            ("env", self.env_id),
            ("agent", self.agent or "-"),
            ("episodes", f"{self.n_episodes} (seeds {self.seed}..{self.seed + self.n_episodes - 1})"),
        ]
        if multi:
            rows.append(("interaction", f"{self.interaction}, at most {self.max_turns} turns"))
        rows += [
            ("mean return" if multi else "mean reward",
             f"{self.mean_reward:.3f}  95% CI [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}]"),
            ("decoding", describe_decoding(self.decoding)),
            ("legal answers" + turns, f"{self.legal_rate:.3f}"),
            ("mean reward, legal" + turns,
             "-" if self.legal_mean_reward is None else f"{self.legal_mean_reward:.3f}"),
        ]
        if self.accuracy is not None:
            rows.append(("accuracy", f"{self.accuracy:.3f}"))
        if multi:
            rows += [
                ("success within k", "  ".join(f"k={k} {v:.3f}" for k, v in enumerate(self.success_at_k, 1))),
                ("AUCCESS", f"{self.auccess:.3f}"),
                ("mean turns to success",
                 "-" if self.mean_attempts_to_success is None else f"{self.mean_attempts_to_success:.2f}"),
                ("reward by attempt", "  ".join(
                    f"{k}: {'-' if m is None else f'{m:.3f}'} (n={c})"
                    for k, (m, c) in enumerate(zip(self.reward_by_attempt, self.episodes_by_attempt), 1))),
                ("improvement", f"{self.improvement:+.3f} (last minus first turn reward, mean over episodes)"),
            ]
        rows.append(("outcomes" + turns, ", ".join(f"{k} {v}" for k, v in sorted(self.outcome_counts.items()))))
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

    Multi-step envs (``env.unwrapped.interaction`` other than ``"single"``, DESIGN.md
    section 7) are played turn by turn: ``batch_size`` episodes start together, and each
    turn their still-running episodes go to ``agent.act`` in one call, each observation's
    ``"info"`` being that episode's latest info (``reset``'s at turn 1, the last step's
    after); an episode leaves once ``terminated or truncated``. The result then adds the
    metrics of :mod:`evaluation.episodes` (see :class:`EvaluationResult`).

    Raises:
        gymnasium.error.Error: unknown ``env_id`` (Gymnasium names close matches).
        ValueError: ``n_episodes`` or ``batch_size`` < 1, or the agent returned a
            different number of answers than observations.
        RuntimeError: a multi-step env left an episode running after ``max_turns`` turns.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pool = [gym.make(env_id, **(env_kwargs or {})) for _ in range(min(batch_size, n_episodes))]
    interaction = getattr(pool[0].unwrapped, "interaction", "single")
    max_turns = int(getattr(pool[0].unwrapped, "max_turns", 1))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_episodes, desc=env_id, unit="ep")
    records: list[EpisodeRecord] = []
    try:
        for start in range(seed, seed + n_episodes, batch_size):
            seeds = list(range(start, min(start + batch_size, seed + n_episodes)))
            if interaction == "single":
                records += _play_single_step(agent, pool, seeds)
            else:
                records += _play_multi_step(agent, pool, seeds, max_turns, env_id)
            if bar is not None:
                bar.update(len(seeds))
    finally:
        if bar is not None:
            bar.close()
        for env in pool:
            env.close()
    if interaction == "single":
        binary = getattr(pool[0].unwrapped, "answer_format", None) in BINARY_LABELS
        result = summarise(records, env_id, seed, binary=binary, agent_name=type(agent).__name__)
    else:
        result = summarise_multi_step(records, env_id, seed, max_turns, interaction,
                                      agent_name=type(agent).__name__)
    decoding = decoding_of(agent)
    result.decoding = None if decoding is None else {**decoding, "batch_size": batch_size}
    return result


def _act(agent: Agent, observations: list[dict[str, Any]]) -> list[Any]:
    answers = list(agent.act(observations))
    if len(answers) != len(observations):
        raise ValueError(
            f"{type(agent).__name__}.act returned {len(answers)} answers for "
            f"{len(observations)} observations; it must return one per observation"
        )
    return answers


def _play_single_step(agent: Agent, pool: list[gym.Env], seeds: list[int]) -> list[EpisodeRecord]:
    observations = []
    for env, s in zip(pool, seeds):
        obs, info = env.reset(seed=s)
        observations.append({**obs, "info": info})
    answers = _act(agent, observations)
    records = []
    for env, s, answer in zip(pool, seeds, answers):
        _, reward, _, _, info = env.step(answer)
        records.append(EpisodeRecord(
            seed=s, answer=answer if isinstance(answer, str) else repr(answer),
            reward=float(reward), outcome=info["outcome"],
            parsed_action=list(info["parsed_action"]) if isinstance(info["parsed_action"], tuple)
            else info["parsed_action"],
            distance=info["distance"], stable_initially=info["stable_initially"],
            offset=info["offset"], n_blocks=info["n_blocks"], falls=info.get("falls"),
            difficulty=info.get("difficulty"), difficulty_level=info.get("difficulty_level"),
        ))
    return records


def _jsonable(value: Any) -> Any:
    """Tuples (also nested) as lists and numpy scalars as Python numbers, so records equal their JSON."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _play_multi_step(agent: Agent, pool: list[gym.Env], seeds: list[int], max_turns: int,
                     env_id: str) -> list[EpisodeRecord]:
    """Play ``len(seeds)`` episodes together, one ``act`` call per turn over the running ones."""
    envs_ = pool[:len(seeds)]
    latest, reset_infos = [], []
    for env, s in zip(envs_, seeds):
        obs, info = env.reset(seed=s)
        latest.append({**obs, "info": info})
        reset_infos.append(info)
    turns: list[list[dict[str, Any]]] = [[] for _ in seeds]
    running = list(range(len(seeds)))
    for _ in range(max_turns):
        if not running:
            break
        answers = _act(agent, [latest[i] for i in running])
        still = []
        for i, answer in zip(running, answers):
            obs, reward, terminated, truncated, info = envs_[i].step(answer)
            distance = info.get("distance")
            turns[i].append({
                "answer": answer if isinstance(answer, str) else repr(answer), "reward": float(reward),
                "outcome": info["outcome"], "success": bool(info.get("success", False)),
                "parsed_action": _jsonable(info.get("parsed_action")),
                "distance": None if distance is None else float(distance),
            })
            latest[i] = {**obs, "info": info}
            if not (terminated or truncated):
                still.append(i)
        running = still
    if running:  # an env bug: a loop that trusted it would never end
        raise RuntimeError(f"{env_id}: episodes of seeds {[seeds[i] for i in running]} still running after "
                           f"max_turns={max_turns} turns; a multi-step env must end every episode "
                           "(terminated or truncated) by its max_turns-th step")
    records = []
    for s, info, episode in zip(seeds, reset_infos, turns):
        last = episode[-1]
        records.append(EpisodeRecord(
            seed=s, answer=last["answer"], reward=math.fsum(t["reward"] for t in episode),
            outcome=last["outcome"], parsed_action=last["parsed_action"], distance=last["distance"],
            stable_initially=info.get("stable_initially"), offset=_jsonable(info.get("offset")),
            n_blocks=info.get("n_blocks"), turns=episode, success=any(t["success"] for t in episode),
            n_turns=len(episode),
        ))
    return records


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


def summarise_multi_step(records: list[EpisodeRecord], env_id: str, seed: int, max_turns: int,
                         interaction: str, agent_name: str = "") -> EvaluationResult:
    """Build an :class:`EvaluationResult` from multi-step records (each with ``turns``).

    Legal rate, legal mean reward and outcome counts are over all turns of all episodes;
    the episode metrics come from :func:`evaluation.episodes.episode_metrics`.

    Raises:
        ValueError: no records, or a record without ``turns`` or longer than ``max_turns``.
    """
    if any(r.turns is None for r in records):
        raise ValueError("every record needs its turns (a multi-step EpisodeRecord); got a single-step one")
    all_turns = [t for r in records for t in r.turns]
    legal = [t["reward"] for t in all_turns if t["outcome"] not in ILLEGAL_OUTCOMES]
    m = episode_metrics([[(t["reward"], t["success"]) for t in r.turns] for r in records], max_turns, seed=seed)
    return EvaluationResult(
        env_id=env_id, n_episodes=len(records), seed=seed, mean_reward=m["mean_return"], ci95=m["return_ci95"],
        legal_rate=len(legal) / len(all_turns), legal_mean_reward=float(np.mean(legal)) if legal else None,
        accuracy=None, outcome_counts=dict(Counter(t["outcome"] for t in all_turns)), episodes=records,
        agent=agent_name, success_at_k=m["success_at_k"], auccess=m["auccess"],
        reward_by_attempt=m["reward_by_attempt"], episodes_by_attempt=m["episodes_by_attempt"],
        mean_return=m["mean_return"], improvement=m["improvement"],
        mean_attempts_to_success=m["mean_attempts_to_success"], max_turns=max_turns, interaction=interaction,
    )
