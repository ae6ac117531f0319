"""The Agent protocol: anything with ``act`` plugs into evaluation and training.

Observations are the environments' observations (``{"image": (H, W, 3) uint8,
"prompt": str}``; multi-step episodes add ``"history"``, the earlier turns, each
``{"image", "prompt", "answer"}``: DESIGN.md section 7). :func:`evaluation.evaluate` adds one key, ``"info"``: the
``info`` dict that ``reset`` returned for that episode. It holds privileged
ground truth (the scene, ``optimal_action``) next to harmless metadata
(``task``, ``answer_format``); only reference agents such as
:class:`agents.OracleAgent` may read the privileged part, and every agent must
work without the key, as a plain Gymnasium loop passes none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from envs.answers import ANSWER_FORMATS
from envs.prompts import LERER, PROMPTS, TOWER_BUILD, WORLD_PROMPTS, reasoning_variant
from envs.tower_env import ALL_TASKS as TASKS
from envs.worlds import polarity

__all__ = ["Agent", "Observation", "task_of", "task_name_of", "polarity_of", "decoding_of"]

# Every task's first-turn prompt, the paper's and the worlds', for recognising a task without info.
_ALL_PROMPTS = {**PROMPTS, **WORLD_PROMPTS}

Observation = Mapping[str, Any]


@runtime_checkable
class Agent(Protocol):
    """Batch in, one text answer per observation out."""

    def act(self, observations: Sequence[Observation]) -> list[str]:
        """Answer each observation.

        Args:
            observations: environment observations (see the module docstring).

        Returns:
            One answer string per observation, in order.
        """
        ...


def task_of(observation: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(answer_format, scene family or None)`` from ``info`` if present, else from the prompt text
    (of the first turn, in a multi-step episode: later turns' prompts do not restate the task)."""
    task, fmt = _task_and_format(observation)
    family = TASKS[task][0] if task in TASKS else ("side_block" if "red block" in _first_prompt(observation).lower()
                                                   else None)
    return fmt, family


def task_name_of(observation: Mapping[str, Any]) -> str | None:
    """The task (a key of :data:`envs.tower_env.ALL_TASKS`) from ``info`` or the first prompt; None if unknown."""
    return _task_and_format(observation)[0]


def polarity_of(observation: Mapping[str, Any]) -> tuple[tuple[str, str], str]:
    """``(labels, yes_means)`` of a binary observation's task (:func:`envs.worlds.polarity`): e.g.
    ``(("Yes", "No"), "falls")`` for ``TowerStability-v0``, recognised from ``info`` or the prompt."""
    return polarity(*_task_and_format(observation))


def _reasoning_or_none(prompt: str) -> str | None:
    try:
        return reasoning_variant(prompt)
    except ValueError:  # a prompt without the closing sentence has no reasoning variant
        return None


def _first_prompt(observation: Mapping[str, Any]) -> str:
    history = observation.get("history") or ()
    first = history[0] if history and isinstance(history[0], Mapping) else observation
    prompt = first.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _task_and_format(observation: Mapping[str, Any]) -> tuple[str | None, str]:
    info = observation.get("info")
    info = info if isinstance(info, Mapping) else {}
    task = info.get("task")
    fmt = info.get("answer_format")
    prompt = _first_prompt(observation)
    if task not in TASKS:
        task = next((t for t, text in _ALL_PROMPTS.items()
                     if prompt.startswith(text) or prompt.startswith(_reasoning_or_none(text) or text)), None)
    if task not in TASKS and prompt.startswith(TOWER_BUILD.partition("{colours}")[0]):
        task = "tower_build"
    if fmt not in ANSWER_FORMATS:
        if task in TASKS:
            fmt = TASKS[task][1]
        elif prompt.startswith(LERER):
            fmt = "binary"
        else:  # an unknown wording: guess the format from what it asks for
            low = prompt.lower()
            fmt = ("xy" if ("two integers" in low or "two values" in low)
                   else "x" if ("one integer" in low or "an integer" in low)
                   else "true_false" if ("true" in low and "false" in low) else "binary")
    return (task if task in TASKS else None), fmt


def decoding_of(agent: Any) -> dict[str, Any] | None:
    """How ``agent`` turns a model into answers, as recorded under ``"decoding"`` in results.

    An agent may define ``decoding_record() -> dict`` (a log-probability judge does); a
    sampling agent's ``sampling`` settings (:class:`agents.backends.base.SamplingParams`)
    are recorded by their ``to_dict()``; agents without a model (random, oracle, constant,
    perceive-then-simulate) have no decoding: None.
    """
    record = getattr(agent, "decoding_record", None)
    if callable(record):
        return dict(record())
    sampling = getattr(agent, "sampling", None)
    to_dict = getattr(sampling, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else None
