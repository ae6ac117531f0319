"""Reference agents without learning: random, constant, and the oracle.

Every learning claim must beat :class:`ConstantAgent` with the task's best fixed
answer (the image-blind shortcut), not just :class:`RandomAgent`: answering 0
on ``TopBlockXOnly-v0`` keeps every stable tower stable and scores about 9 of 20.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.answers import sample_legal_answer

from .base import Observation, task_of

__all__ = ["RandomAgent", "ConstantAgent", "OracleAgent", "RepeatAgent"]


class RandomAgent:
    """A uniformly random legal answer for each observation's task.

    The answer format comes from ``observation["info"]["answer_format"]`` when
    present, else from the prompt (:func:`agents.base.task_of`); ``answer_format``
    overrides both. ``TowerBuild-v0`` (``colour_x``): a colour of
    ``info["movable_colours"]`` (the cubes on the floor, as visible as in the image)
    when present, else any colour a cube can have, and x uniform in [-600, 600].

    Args:
        seed: seeds ``numpy.random.default_rng``; the same seed and observations
            give the same answers.
        answer_format: ``"binary"``, ``"x"`` or ``"xy"`` to force one format.
    """

    def __init__(self, seed: int | None = 0, answer_format: str | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.answer_format = answer_format

    def act(self, observations: Sequence[Observation]) -> list[str]:
        answers = []
        for obs in observations:
            fmt = self.answer_format or task_of(obs)[0]
            info = obs.get("info") if isinstance(obs.get("info"), Mapping) else {}
            answers.append(sample_legal_answer(fmt, self.rng, info.get("movable_colours")))
        return answers


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


class RepeatAgent:
    """Wraps any agent and answers every turn as it answered the first: the reference that ignores feedback.

    DESIGN.md section 7: an agent that ignores feedback repeats attempt 1's
    distribution. At a later turn of a multi-step episode the wrapped agent is asked
    the first turn's question again (the first turn's image and prompt, no history,
    and the ``task`` / ``answer_format`` of ``info`` only, never its privileged keys),
    so a sampling agent draws a fresh answer from its turn-1 distribution and a
    deterministic one (perceive-then-simulate) gives the same answer every turn. With
    ``resample=False`` it copies its first answer from the history instead (for a
    sampling agent, the same answer every turn). Single-step observations and first
    turns go to the wrapped agent unchanged; one ``act`` call of the wrapped agent per batch.

    Args:
        agent: anything with ``act`` (:class:`agents.base.Agent`).
        resample: draw again from the turn-1 question (default) or copy the first answer.
    """

    def __init__(self, agent: Any, resample: bool = True) -> None:
        if not callable(getattr(agent, "act", None)):
            raise TypeError(f"RepeatAgent wraps an agent with act(observations), got {type(agent).__name__}")
        self.agent = agent
        self.resample = resample

    def __getattr__(self, name: str) -> Any:
        # decoding records (sampling, decoding_record) are the wrapped agent's.
        if name in ("sampling", "decoding_record"):
            return getattr(self.agent, name)
        raise AttributeError(name)

    def act(self, observations: Sequence[Observation]) -> list[str]:
        answers: list[str | None] = [None] * len(observations)
        asked, questions = [], []
        for i, obs in enumerate(observations):
            history = obs.get("history") or ()
            if not history:
                asked.append(i)
                questions.append(obs)
            elif not self.resample:
                answers[i] = history[0]["answer"]
            else:
                info = obs.get("info") if isinstance(obs.get("info"), Mapping) else {}
                first = {"image": history[0]["image"], "prompt": history[0]["prompt"],
                         "info": {k: info[k] for k in ("task", "answer_format") if k in info}}
                asked.append(i)
                questions.append(first)
        if questions:
            for i, answer in zip(asked, self.agent.act(questions)):
                answers[i] = answer
        return [a if isinstance(a, str) else str(a) for a in answers]
