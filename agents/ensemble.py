"""``VoteAgent``: several agents answer, the majority decides (an ensemble through the Agent protocol).

Every member answers every observation (one ``act`` call per member and batch); the ensemble's
answer per observation is, among the members' legal answers (:func:`envs.answers.parse_answer`
with the observation's format, :func:`agents.base.task_of`):

* binary formats (``binary``, ``true_false``): the label most members gave; a tie goes to the
  label of the first member that answered legally (the chair), so an ensemble of two is its chair
  wherever they disagree;
* ``x`` and ``xy``: the median of each coordinate (rounded half to even to integer units), the
  vote of the middle member for numbers;
* ``colour_x``, or no member legal: the first member's text as it wrote it (any string is a
  legal action; the env judges it).

Members answer the same prompt, so their labels mean the same; the majority is by label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.answers import is_binary, parse_answer

from .base import Observation, task_of

__all__ = ["VoteAgent"]


class VoteAgent:
    """Majority vote of ``members`` (the first is the chair: it breaks ties).

    Args:
        members: two or more objects with ``act(observations) -> list[str]`` (:class:`agents.base.Agent`).
        names: optional display names of the members, recorded as ``member_names``.

    Raises:
        ValueError: fewer than two members, or ``names`` of another length.
        TypeError: a member without ``act``.
    """

    def __init__(self, members: Sequence[Any], names: Sequence[str] | None = None) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a vote needs at least two members, got {len(members)}")
        for m in members:
            if not callable(getattr(m, "act", None)):
                raise TypeError(f"VoteAgent members need act(observations); got {type(m).__name__}")
        if names is not None and len(names) != len(members):
            raise ValueError(f"{len(names)} names for {len(members)} members")
        self.members = members
        self.member_names = list(names) if names is not None else [type(m).__name__ for m in members]

    def act(self, observations: Sequence[Observation]) -> list[str]:
        """One answer per observation, in order (each member's ``act`` is called once, on all of them)."""
        if len(observations) == 0:
            return []
        per_member = [m.act(observations) for m in self.members]
        return [self._vote(task_of(obs)[0], [answers[i] for answers in per_member])
                for i, obs in enumerate(observations)]

    @staticmethod
    def _vote(answer_format: str, texts: list[str]) -> str:
        if not is_binary(answer_format) and answer_format not in ("x", "xy"):
            return texts[0]
        legal = [p.value for p in (parse_answer(t, answer_format) for t in texts) if p.legal]
        if not legal:
            return texts[0]
        if is_binary(answer_format):
            counts = Counter(legal)
            top = max(counts.values())
            label = next(v for v in legal if counts[v] == top)  # first legal voter among the tied
            return f"<answer>{label}</answer>"
        values = np.rint(np.median(np.asarray(legal, dtype=np.float64).reshape(len(legal), -1), axis=0))
        return f"<answer>{', '.join(str(int(v)) for v in values)}</answer>"
