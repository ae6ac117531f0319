"""``LogProbJudge``: Yes/No judgements from answer probabilities instead of sampled text.

Schulze Buschoff et al. (ICML 2025, "Testing the limits of fine-tuning to improve
reasoning in vision language models") score a VLM on binary questions by the
probabilities it gives the two answers rather than by sampling one. Here the two
scored completions are the complete assistant turns

* ``"<answer>Yes</answer>" + end_token`` and
* ``"<answer>No</answer>" + end_token`` (``end_token`` default ``"<|im_end|>"``,
  Qwen's end of turn, which the trainer also appends to oracle answers),

each tokenised on its own (``tokenizer.encode(text, add_special_tokens=False)``)
and scored teacher-forced after the observation's chat prompt
(:meth:`agents.vlm.VLMAgent.completion_logprobs`: the current model and adapter,
temperature 1). A completion's log-probability is the **sum of its token
log-probabilities**, ``log p(Yes) = sum_t log p(y_t | prompt, y_<t)``, and

    P(Yes) = exp(log p(Yes)) / (exp(log p(Yes)) + exp(log p(No)))
           = sigmoid(log p(Yes) - log p(No)),

the probability renormalised over the two answers (mass on every other text is
ignored). ``act`` answers the more probable of the two (``Yes`` on a tie), so
:func:`evaluation.evaluate`, the generalisation matrix and real-photo evaluation
use it like any agent.

Polarity and wording (:func:`agents.base.polarity_of`): the scored answers are the task's
two labels, ``Yes`` / ``No`` or ``True`` / ``False`` (``ShapeStacksStability-v0``), first
label first; "P(Yes)" is always the first label's probability, whatever it asserts (on
``TowerStability-v0`` Yes means the tower falls). Where the task's prompt is a study's
pre-prompt plus our request for the tags (:data:`envs.prompts.PRE_PROMPTS`: the ICML 2025
towers), the judge scores as that study did: the pre-prompt alone as the prompt, and the bare
answers ``"Yes" + end_token`` / ``"No" + end_token`` (no tags, which the pre-prompt never asks
for). ``act`` still answers in tags, so the environment parses it.

    >>> judge = LogProbJudge.from_pretrained("tiny-base")
    >>> judge.probabilities(observations)      # (n,) float64, P(Yes)
    >>> judge.act(observations)                # ["<answer>Yes</answer>", ...]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.prompts import PRE_PROMPTS, WORLD_PROMPTS

from .base import polarity_of, task_name_of, task_of

__all__ = ["LogProbJudge", "YES_ANSWER", "NO_ANSWER"]

YES_ANSWER = "<answer>Yes</answer>"
NO_ANSWER = "<answer>No</answer>"


class LogProbJudge:
    """A binary-task agent that answers by the normalised probabilities of Yes and No.

    Args:
        agent: a loaded :class:`agents.vlm.VLMAgent` (its model, processor and active adapter are used;
            its sampling settings are not).
        end_token: token appended to both answers before scoring (the end of the assistant turn), or
            None to score the answer texts alone.
        batch_size: observations per teacher-forced forward (two completions each).

    Raises:
        ValueError: ``end_token`` is not a single token of the agent's tokenizer, or ``batch_size`` < 1.
    """

    answers = (YES_ANSWER, NO_ANSWER)

    def __init__(self, agent: Any, end_token: str | None = "<|im_end|>", batch_size: int = 16) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.agent = agent
        self.end_token = end_token
        self.batch_size = batch_size
        tok = agent.processor.tokenizer
        suffix: list[int] = []
        if end_token is not None:
            end_id = tok.convert_tokens_to_ids(end_token)
            if end_id is None or end_id == tok.unk_token_id or tok.convert_ids_to_tokens(end_id) != end_token:
                raise ValueError(f"end_token {end_token!r} is not a token of this model's tokenizer; pass its "
                                 "end-of-turn token or end_token=None to score the answers alone")
            suffix = [int(end_id)]
        self._suffix = suffix
        # answer text -> the token ids scored for it (the 2026 paper's two; other labels are added when met)
        self.completion_ids: dict[str, list[int]] = {}
        for a in self.answers:
            self._ids(a)

    def _ids(self, text: str) -> list[int]:
        if text not in self.completion_ids:
            tok = self.agent.processor.tokenizer
            self.completion_ids[text] = list(tok.encode(text, add_special_tokens=False)) + self._suffix
        return self.completion_ids[text]

    def scoring_plan(self, observation: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, str], tuple[str, str]]:
        """What is scored for one binary observation: ``(scored observation, (first, second) scored
        texts, (first, second) answers act gives)``; see the module docstring.

        Raises:
            ValueError: the observation is not of a binary task.
        """
        self._check_binary([observation])
        labels, _ = polarity_of(observation)
        answers = (f"<answer>{labels[0]}</answer>", f"<answer>{labels[1]}</answer>")
        task = task_name_of(observation)
        if task in PRE_PROMPTS and observation.get("prompt") == WORLD_PROMPTS[task]:
            return {**observation, "prompt": PRE_PROMPTS[task]}, labels, answers
        return observation, answers, answers

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "tiny-base", adapter: str | os.PathLike | None = None,
                        end_token: str | None = "<|im_end|>", batch_size: int = 16, **kwargs: Any) -> LogProbJudge:
        """Load a VLM with :meth:`agents.vlm.VLMAgent.from_pretrained` (``kwargs`` go there) and wrap it."""
        from .vlm import VLMAgent

        return cls(VLMAgent.from_pretrained(name_or_path, adapter=adapter, **kwargs),
                   end_token=end_token, batch_size=batch_size)

    def decoding_record(self) -> dict[str, Any]:
        """The ``"decoding"`` of results: no sampling, the more probable of the two scored answers."""
        return {"greedy": True, "method": "log-probability judgement",
                "scored": {a: self.agent.processor.tokenizer.decode(ids) for a, ids in self.completion_ids.items()},
                "pre_prompt_tasks": sorted(PRE_PROMPTS)}

    def _check_binary(self, observations: Sequence[Mapping[str, Any]]) -> None:
        for i, obs in enumerate(observations):
            fmt, _ = task_of(obs)
            if fmt not in ("binary", "true_false"):
                info = obs.get("info") if isinstance(obs.get("info"), Mapping) else {}
                task = (f"task {info['task']!r}" if info.get("task")
                        else f"with prompt {str(obs.get('prompt', ''))[:60] + '...'!r}")
                raise ValueError(
                    f"LogProbJudge scores two-answer tasks only (Yes/No, True/False); observation {i} ({task}) "
                    f"has answer format {fmt!r}. Use it on binary tasks (TopBlockStability-v0, "
                    "RealTowerStability-v0, TowerStability-v0, ...) and a sampling agent (vlm:MODEL) elsewhere")

    def log_probabilities(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Summed teacher-forced log-probabilities of the two scored completions (:meth:`scoring_plan`).

        Returns:
            float64 array of shape ``(len(observations), 2)``: column 0 ``log p(Yes)`` (the first
            label), column 1 ``log p(No)`` (natural log, each the sum over its completion's tokens, <= 0).

        Raises:
            ValueError: an observation is not of a binary (Yes/No) task.
            KeyError: an observation lacks ``"image"`` or ``"prompt"``.
        """
        return self._score(observations)[0]

    def _score(self, observations: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list]:
        """:meth:`log_probabilities` and each observation's :meth:`scoring_plan`, planned once."""
        import torch

        self._check_binary(observations)
        out = np.zeros((len(observations), 2), dtype=np.float64)
        plans = [self.scoring_plan(obs) for obs in observations]
        for start in range(0, len(observations), self.batch_size):
            chunk = plans[start:start + self.batch_size]
            # Each observation twice in a row (the same object): completion_logprobs runs its prompt once.
            repeated = [scored for scored, _, _ in chunk for _ in range(2)]
            completions = [self._ids(text) for _, texts, _ in chunk for text in texts]
            with torch.no_grad():
                logps = self.agent.completion_logprobs(repeated, completions)
            sums = np.array([float(lp.double().sum()) for lp in logps], dtype=np.float64)
            out[start:start + len(chunk)] = sums.reshape(len(chunk), 2)
        return out, plans

    def probabilities(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``P(Yes)`` renormalised over {Yes, No}: float64 array of shape ``(len(observations),)`` in [0, 1].

        ``P(Yes) = sigmoid(log p(Yes) - log p(No))`` with the log-probabilities of
        :meth:`log_probabilities`; ``P(No) = 1 - P(Yes)``.

        Raises:
            ValueError: an observation is not of a binary (Yes/No) task.
        """
        return self.judgements(observations)[1]

    def judgements(self, observations: Sequence[Mapping[str, Any]]) -> tuple[list[str], np.ndarray]:
        """Answers and ``P(Yes)`` from one scoring pass: ``(act(observations), probabilities(observations))``.

        Raises:
            ValueError: an observation is not of a binary (Yes/No) task.
        """
        logp, plans = self._score(observations)
        if logp.size == 0:
            return [], np.zeros(0, dtype=np.float64)
        p_yes = np.exp(logp[:, 0] - np.logaddexp(logp[:, 0], logp[:, 1]))
        return [plan[2][int(i)] for plan, i in zip(plans, np.argmax(logp, axis=1))], p_yes

    def act(self, observations: Sequence[Mapping[str, Any]]) -> list[str]:
        """The more probable answer per observation: ``"<answer>Yes</answer>"`` when
        ``log p(Yes) >= log p(No)`` (``P(Yes) >= 0.5``), else ``"<answer>No</answer>"``.

        Raises:
            ValueError: an observation is not of a binary (Yes/No) task.
        """
        return self.judgements(observations)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.agent!r}, end_token={self.end_token!r})"
