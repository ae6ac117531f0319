"""Reference agents without learning: random, constant, and the oracle.

Every learning claim must beat :class:`ConstantAgent` with the task's best fixed
answer (the image-blind shortcut), not just :class:`RandomAgent`: answering 0
on ``TopBlockXOnly-v0`` keeps every stable tower stable and scores about 9 of 20.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.answers import sample_legal_answer

from .base import Observation, task_of

__all__ = ["RandomAgent", "ConstantAgent", "OracleAgent"]


class RandomAgent:
    """A uniformly random legal answer for each observation's task.

    The answer format comes from ``observation["info"]["answer_format"]`` when
    present, else from the prompt (:func:`agents.base.task_of`); ``answer_format``
    overrides both.

    Args:
        seed: seeds ``numpy.random.default_rng``; the same seed and observations
            give the same answers.
        answer_format: ``"binary"``, ``"x"`` or ``"xy"`` to force one format.
    """

    def __init__(self, seed: int | None = 0, answer_format: str | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.answer_format = answer_format

    def act(self, observations: Sequence[Observation]) -> list[str]:
        return [
            sample_legal_answer(self.answer_format or task_of(obs)[0], self.rng)
            for obs in observations
        ]


class ConstantAgent:
    """The same answer text for every observation (e.g. ``"<answer>0</answer>"``)."""

    def __init__(self, answer: str) -> None:
        if not isinstance(answer, str):
            raise TypeError(f"answer must be a str such as '<answer>0</answer>', got {type(answer).__name__}")
        self.answer = answer

    def act(self, observations: Sequence[Observation]) -> list[str]:
        return [self.answer] * len(observations)


class OracleAgent:
    """The optimal answer, read from privileged ground truth.

    It reads ``observation["info"]["optimal_action"]``: the ``info`` of the
    episode's ``reset``, which :func:`evaluation.evaluate` puts into each
    observation. The environment computes that answer from its scene (the
    centring move for placement tasks; the simulated verdict for the binary
    task).

    Raises:
        KeyError: an observation carries no ``info`` with ``optimal_action``
            (plain Gymnasium loops pass none: add ``obs["info"] = info``).
    """

    def act(self, observations: Sequence[Observation]) -> list[str]:
        answers = []
        for obs in observations:
            info = obs.get("info") if hasattr(obs, "get") else None
            if not info or "optimal_action" not in info:
                raise KeyError(
                    "OracleAgent reads observation['info']['optimal_action']; pass the reset info "
                    "as obs['info'] (evaluation.evaluate does this)"
                )
            answers.append(info["optimal_action"])
        return answers
