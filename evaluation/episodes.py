"""Metrics of multi-step episodes (DESIGN.md section 7), pure functions of per-turn outcomes.

An episode is the list of its turns, oldest first, each a ``(reward, success)`` pair:
the step reward of that turn's answer and ``info["success"]`` after it. Episodes may
have different lengths (a retry episode stops at its first success); every function
takes the episodes of one evaluation as ``Sequence[Sequence[tuple[float, bool]]]``.

* :func:`success_at_k`: fraction of episodes solved within k turns, k = 1..K.
* :func:`auccess`: PHYRE's AUCCESS, a weighted mean of those fractions that favours
  early success (Bakhtin et al. 2019, "PHYRE: A New Benchmark for Physical Reasoning",
  NeurIPS, arXiv 1908.05656, section 4; reference implementation ``phyre.metrics.compute_metrics``).
* :func:`reward_by_attempt`: mean reward of turn k over the episodes that made a k-th turn.
* :func:`mean_return`: mean episode return with a 95% bootstrap interval.
* :func:`improvement`: mean of (last-turn reward - first-turn reward).
* :func:`mean_attempts_to_success`: mean turn of the first success, over solved episodes.

:func:`episode_metrics` computes them all at once, as :func:`evaluation.evaluate` records them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Turn", "Episode", "success_at_k", "auccess", "auccess_weights", "reward_by_attempt",
           "episode_returns", "mean_return", "improvement", "mean_attempts_to_success", "episode_metrics"]

Turn = tuple[float, bool]
"""One turn: ``(reward, success)``."""

Episode = Sequence[Turn]
"""One episode: its turns, oldest first (at least one)."""


def _check(episodes: Sequence[Episode], max_turns: int | None = None) -> None:
    """Raise ValueError unless there is at least one episode, each of 1..max_turns turns."""
    if len(episodes) == 0:
        raise ValueError("episodes is empty; give at least one episode (a list of (reward, success) turns)")
    if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer))
                                  or max_turns < 1):
        raise ValueError(f"max_turns must be an int >= 1 (the env's max_turns), got {max_turns!r}")
    for i, episode in enumerate(episodes):
        if len(episode) == 0:
            raise ValueError(f"episode {i} has no turns; every episode has at least one (reward, success) turn")
        if max_turns is not None and len(episode) > max_turns:
            raise ValueError(f"episode {i} has {len(episode)} turns, more than max_turns={max_turns}; "
                             "pass the env's max_turns")


def _first_success(episode: Episode) -> int | None:
    """1-based index of the first successful turn, or None."""
    return next((k for k, (_, success) in enumerate(episode, start=1) if success), None)


def success_at_k(episodes: Sequence[Episode], max_turns: int) -> list[float]:
    """Fraction of episodes with a successful turn among their first k turns, for k = 1..max_turns.

    Non-decreasing in k; an episode that ended early without success (a collapse) counts
    as unsolved at every k.

    Returns:
        ``max_turns`` floats in [0, 1]; element ``k - 1`` is success within k turns.

    Raises:
        ValueError: no episodes, an episode without turns or longer than ``max_turns``,
            or ``max_turns`` < 1.
    """
    _check(episodes, max_turns)
    first = [_first_success(e) for e in episodes]
    n = len(episodes)
    return [sum(1 for f in first if f is not None and f <= k) / n for k in range(1, max_turns + 1)]


def auccess_weights(max_turns: int) -> np.ndarray:
    """PHYRE's AUCCESS weights ``w_k = log(k + 1) - log(k)``, k = 1..max_turns: float64, ``(max_turns,)``.

    They sum to ``log(max_turns + 1)``. Raises ValueError if ``max_turns`` < 1.
    """
    if isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
        raise ValueError(f"max_turns must be an int >= 1, got {max_turns!r}")
    k = np.arange(1, max_turns + 1, dtype=np.float64)
    return np.log(k + 1) - np.log(k)


def auccess(success_rates: Sequence[float]) -> float:
    """AUCCESS: ``sum_k w_k s_k / sum_k w_k`` with ``w_k = log(k + 1) - log(k)``, k = 1..K.

    From Bakhtin et al. (2019), "PHYRE: A New Benchmark for Physical Reasoning", section 4,
    where K = 100 attempts; here K is the env's ``max_turns``. ``s_k`` is the success rate
    within k attempts (:func:`success_at_k`); the logarithmic weights reward solving in
    few attempts (at K = 3, w_1 = log 2 is half of the total weight log 4). K = 1 gives ``s_1``.

    Args:
        success_rates: ``s_1 .. s_K``, each in [0, 1].

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: empty ``success_rates`` or a rate outside [0, 1].
    """
    rates = np.asarray(success_rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError(f"success_rates must be a non-empty list s_1..s_K (success_at_k), got {success_rates!r}")
    if np.any(~np.isfinite(rates)) or np.any(rates < 0) or np.any(rates > 1):
        raise ValueError(f"success rates must lie in [0, 1], got {list(map(float, rates))}")
    w = auccess_weights(rates.size)
    return float(np.dot(w, rates) / w.sum())


def reward_by_attempt(episodes: Sequence[Episode], max_turns: int) -> tuple[list[float | None], list[int]]:
    """Mean reward of turn k over the episodes that made a k-th turn, k = 1..max_turns.

    Later turns are averaged over fewer episodes (those not yet ended), so this is a
    survivor mean: in a retry env the easy scenes leave after turn 1.

    Returns:
        ``(means, counts)``, each of length ``max_turns``: ``means[k - 1]`` the mean reward
        of turn k (None where no episode made k turns), ``counts[k - 1]`` how many did.

    Raises:
        ValueError: as :func:`success_at_k`.
    """
    _check(episodes, max_turns)
    means: list[float | None] = []
    counts: list[int] = []
    for k in range(max_turns):
        rewards = [float(e[k][0]) for e in episodes if len(e) > k]
        counts.append(len(rewards))
        means.append(float(np.mean(rewards)) if rewards else None)
    return means, counts


def episode_returns(episodes: Sequence[Episode]) -> np.ndarray:
    """Undiscounted return (sum of turn rewards) of every episode: float64, ``(len(episodes),)``.

    Raises:
        ValueError: no episodes, or an episode without turns.
    """
    _check(episodes)
    return np.array([math.fsum(float(r) for r, _ in e) for e in episodes], dtype=np.float64)


def mean_return(episodes: Sequence[Episode], seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean undiscounted return and its 95% percentile-bootstrap interval.

    The interval is :func:`evaluation.evaluate.bootstrap_ci` over the per-episode returns
    (resampling seeded by ``seed``).

    Raises:
        ValueError: as :func:`episode_returns`.
        ImportError: scipy is missing and the returns are not all equal.
    """
    from .evaluate import bootstrap_ci  # evaluate imports this module; defer the cycle

    returns = episode_returns(episodes)
    return float(returns.mean()), bootstrap_ci(returns, seed=seed)


def improvement(episodes: Sequence[Episode]) -> float:
    """Mean over all episodes of (last turn's reward - first turn's reward).

    Definition: every episode counts, and a one-turn episode (solved at once, or a
    single-turn env) contributes 0, so the number answers "how much better, on average,
    did the episodes end than they began" and is not conditioned on the agent having
    needed a retry. An agent that ignores feedback scores about 0 in expectation on a
    retry env (its later attempts share attempt 1's distribution), which is the
    reference DESIGN.md section 7 names; it can be negative (a sequential move that
    knocks the tower over).

    Raises:
        ValueError: no episodes, or an episode without turns.
    """
    _check(episodes)
    return float(np.mean([float(e[-1][0]) - float(e[0][0]) for e in episodes]))


def mean_attempts_to_success(episodes: Sequence[Episode]) -> float | None:
    """Mean 1-based turn of the first success over the episodes that succeeded; None if none did.

    Raises:
        ValueError: no episodes, or an episode without turns.
    """
    _check(episodes)
    first = [f for f in (_first_success(e) for e in episodes) if f is not None]
    return float(np.mean(first)) if first else None


def episode_metrics(episodes: Sequence[Episode], max_turns: int, seed: int = 0) -> dict[str, Any]:
    """Every metric of this module, keyed as :class:`evaluation.EvaluationResult` stores them.

    Returns:
        ``{"success_at_k": list[float] (max_turns), "auccess": float,
        "reward_by_attempt": list[float | None] (max_turns), "episodes_by_attempt": list[int]
        (max_turns), "mean_return": float, "return_ci95": (low, high), "improvement": float,
        "mean_attempts_to_success": float | None}``.

    Raises:
        ValueError: as :func:`success_at_k`.
    """
    s = success_at_k(episodes, max_turns)
    means, counts = reward_by_attempt(episodes, max_turns)
    mean, ci = mean_return(episodes, seed=seed)
    return {"success_at_k": s, "auccess": auccess(s), "reward_by_attempt": means, "episodes_by_attempt": counts,
            "mean_return": mean, "return_ci95": ci, "improvement": improvement(episodes),
            "mean_attempts_to_success": mean_attempts_to_success(episodes)}
