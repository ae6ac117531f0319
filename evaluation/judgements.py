"""Sampled answers against log-probability judgements on a binary task (Schulze Buschoff et al., ICML 2025).

:func:`compare_judgements` evaluates one VLM two ways on the same seeded scenes:
by sampling an answer (:meth:`agents.vlm.VLMAgent.act`, the agent's own sampling
settings) and by the normalised probabilities of the two answers
(:class:`agents.logprob.LogProbJudge`: ``P(Yes) = sigmoid(log p(Yes) - log p(No))``
of the teacher-forced completions ``<answer>Yes</answer><|im_end|>`` and
``<answer>No</answer><|im_end|>``, each the sum of its token log-probabilities).
Both go through :func:`evaluation.evaluate`, so accuracy and rewards are the
environment's own. Polarity: "Yes" below is the task's first answer (``True`` on
``ShapeStacksStability-v0``), and whether it is correct is read from each episode's truth
in the task's polarity (:func:`envs.worlds.polarity`: on ``TowerStability-v0`` Yes is
correct when the tower falls), so every binary id is compared the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.backends.base import EVAL_BATCH_SIZE
from envs.worlds import env_polarity

from .evaluate import EvaluationResult, evaluate

__all__ = ["JudgementComparison", "compare_judgements"]


@dataclass
class JudgementComparison:
    """Accuracy of one model on a binary task, sampled vs by log-probabilities.

    Attributes:
        sampled: :func:`evaluate` of the sampling agent.
        logprob: :func:`evaluate` of its :class:`~agents.logprob.LogProbJudge`.
        p_yes: float64, shape ``(n_episodes,)``: ``P(Yes)`` per episode, seed order.
        yes_correct: bool, shape ``(n_episodes,)``: the first answer ("Yes") is the correct one, per episode.
    """

    env_id: str
    n_episodes: int
    seed: int
    sampled: EvaluationResult
    logprob: EvaluationResult
    p_yes: np.ndarray = field(repr=False)
    yes_correct: np.ndarray = field(repr=False)

    @property
    def sampled_accuracy(self) -> float:
        """Fraction of sampled answers that are correct (unparseable answers count as wrong)."""
        return float(self.sampled.accuracy)

    @property
    def logprob_accuracy(self) -> float:
        """Fraction of episodes where the more probable of Yes / No is correct."""
        return float(self.logprob.accuracy)

    @property
    def majority_accuracy(self) -> float:
        """Accuracy of the better constant answer on these episodes (the image-blind shortcut)."""
        rate = float(np.mean(self.yes_correct))
        return max(rate, 1.0 - rate)

    @property
    def mean_p_correct(self) -> float:
        """Mean probability given to the correct answer."""
        return float(np.mean(np.where(self.yes_correct, self.p_yes, 1.0 - self.p_yes)))

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "n_episodes": self.n_episodes, "seed": self.seed,
                "sampled_accuracy": self.sampled_accuracy, "sampled_legal_rate": self.sampled.legal_rate,
                "logprob_accuracy": self.logprob_accuracy, "majority_accuracy": self.majority_accuracy,
                "mean_p_yes": float(np.mean(self.p_yes)), "mean_p_correct": self.mean_p_correct,
                "sampled_yes_rate": _yes_rate(self.sampled), "logprob_yes_rate": _yes_rate(self.logprob)}

    def summary(self) -> str:
        """A small readable table of both accuracies and their context."""
        d = self.to_dict()
        rows = [
            ("env", f"{self.env_id}, {self.n_episodes} episodes (seeds {self.seed}..{self.seed + self.n_episodes - 1})"),
            ("accuracy, sampled", f"{d['sampled_accuracy']:.3f}  (legal answers {d['sampled_legal_rate']:.3f}, "
                                  f"Yes {d['sampled_yes_rate']:.3f})"),
            ("accuracy, log-prob", f"{d['logprob_accuracy']:.3f}  (Yes {d['logprob_yes_rate']:.3f})"),
            ("majority answer", f"{d['majority_accuracy']:.3f}  (the better constant answer)"),
            ("mean P(Yes)", f"{d['mean_p_yes']:.3f}"),
            ("mean P(correct)", f"{d['mean_p_correct']:.3f}"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _yes_rate(result: EvaluationResult) -> float:
    first = env_polarity(result.env_id)[0][0]
    return float(np.mean([e.parsed_action == first for e in result.episodes]))


class _RecordingJudge:
    """Answers like the wrapped LogProbJudge and keeps every P(Yes) it computed (one pass, no rescoring)."""

    def __init__(self, judge: Any) -> None:
        self.judge, self.p_yes = judge, []

    def act(self, observations: Sequence[Mapping[str, Any]]) -> list[str]:
        answers, p_yes = self.judge.judgements(observations)
        self.p_yes.extend(p_yes.tolist())
        return answers


def compare_judgements(agent: Any, env_id: str = "TopBlockStability-v0", n_episodes: int = 256, seed: int = 0,
                       batch_size: int = EVAL_BATCH_SIZE, env_kwargs: Mapping[str, Any] | None = None,
                       end_token: str | None = "<|im_end|>") -> JudgementComparison:
    """Evaluate ``agent`` on ``env_id`` by sampled answers and by log-probability judgements.

    Args:
        agent: a :class:`agents.vlm.VLMAgent` (sampled with its own ``sampling`` settings) or a
            :class:`agents.logprob.LogProbJudge` (its wrapped agent is sampled).
        env_id: a binary task (``TopBlockStability-v0``, the worlds' ``TowerStability-v0``, ...;
            ``RealTowerStability-v0`` with ``env_kwargs``).
        n_episodes, seed: episodes on seeds ``seed .. seed + n_episodes - 1``, the same both ways.
        end_token: see :class:`agents.logprob.LogProbJudge`.

    Raises:
        ValueError: ``env_id`` is not a binary (Yes/No) task (raised by the judge, before any sampling).
        gymnasium.error.Error: unknown ``env_id``.
    """
    from agents.logprob import LogProbJudge

    judge = agent if isinstance(agent, LogProbJudge) else LogProbJudge(agent, end_token=end_token,
                                                                        batch_size=batch_size)
    recorder = _RecordingJudge(judge)
    logprob = evaluate(recorder, env_id, n_episodes, seed, batch_size, env_kwargs=dict(env_kwargs or {}))
    logprob.agent = "LogProbJudge"
    sampled = evaluate(judge.agent, env_id, n_episodes, seed, batch_size, env_kwargs=dict(env_kwargs or {}))
    _, yes_means = env_polarity(env_id)
    falls = np.array([bool(e.truth_falls) for e in logprob.episodes])
    yes_correct = falls if yes_means == "falls" else ~falls
    return JudgementComparison(env_id, n_episodes, seed, sampled, logprob, np.array(recorder.p_yes), yes_correct)
