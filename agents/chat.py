"""The chat a VLM sees for one observation: the one prompt builder of the project.

Everything that turns an observation's prompt into model input text builds it here:
:class:`agents.vlm.VLMAgent` (sampling, and the teacher-forced scoring that
:class:`agents.logprob.LogProbJudge` and training use), :mod:`evaluation.probes` and
:mod:`evaluation.attention` (hidden states and attention of the text the agent sees), and
:mod:`training.pretrain` (the tiny base is trained on it). So a model is trained, sampled,
scored and probed on the same text, byte for byte; ``tests/agents/test_chat.py`` pins it.

A single-step chat is one user turn, the image first and then the prompt (the order of
Qwen-VL's model cards), followed by the assistant's generation prompt; the processor's own
chat template renders it (``apply_chat_template``, transformers). A multi-step observation
(DESIGN.md section 7: ``{"image", "prompt", "history"}``) replays every earlier turn of its
``history`` first, oldest first: that turn's user message (image, prompt), then the
assistant's answer as it was given (only ``<|`` is broken up, see :func:`_as_text`). So one
observation rebuilds the whole chat, and agents stay stateless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["chat_messages", "chat_prompt", "observation_chat", "prompts_and_images", "check_max_history_turns"]

_TURN_KEYS = ("image", "prompt", "answer")


def _as_text(answer: str) -> str:
    """An earlier answer as plain text: ``<|`` becomes ``< |``, so that an answer spelling out a
    special token (``<|image_pad|>``, ``<|im_end|>``) cannot become one when the chat is tokenised
    (model output is never an error; a spelled-out image token would break the image count)."""
    return answer.replace("<|", "< |")


def _user_message(prompt: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}


def _checked_history(history: Any, where: str = "history") -> tuple[Mapping[str, Any], ...]:
    """``history`` as a tuple of turns, each a mapping with ``image``, a ``str`` ``prompt`` and a ``str`` ``answer``."""
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
        raise ValueError(f"{where} must be a sequence (tuple or list) of earlier turns "
                         f"{{'image', 'prompt', 'answer'}}, got {type(history).__name__}")
    for k, turn in enumerate(history):
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where} turn {k} must be a dict {{'image', 'prompt', 'answer'}}, "
                             f"got {type(turn).__name__}")
        missing = [key for key in _TURN_KEYS if key not in turn]
        if missing:
            raise ValueError(f"{where} turn {k} lacks {missing}; each earlier turn is "
                             f"{{'image': (H, W, 3) uint8, 'prompt': str, 'answer': str}}, got keys {sorted(turn)}")
        for key in ("prompt", "answer"):
            if not isinstance(turn[key], str):
                raise ValueError(f"{where} turn {k}: {key!r} must be a str, got {type(turn[key]).__name__}")
    return tuple(history)


def chat_messages(prompt: str, history: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The conversation of one observation, in transformers' multimodal message format.

    Args:
        prompt: this turn's text prompt.
        history: the earlier turns, oldest first, each ``{"image", "prompt": str, "answer": str}``
            (the image itself is not part of the messages: a placeholder stands for it).

    Returns:
        Per earlier turn ``{"role": "user", "content": [{"type": "image"}, {"type": "text",
        "text": turn["prompt"]}]}`` and ``{"role": "assistant", "content": [{"type": "text",
        "text": turn["answer"]}]}``, then this turn's user message ``[{"type": "image"},
        {"type": "text", "text": prompt}]`` (a new list each call: callers may extend it).

    Raises:
        ValueError: ``history`` is not a sequence of such dicts.
    """
    messages = []
    for turn in _checked_history(history):
        messages.append(_user_message(turn["prompt"]))
        messages.append({"role": "assistant", "content": [{"type": "text", "text": _as_text(turn["answer"])}]})
    messages.append(_user_message(prompt))
    return messages


def chat_prompt(processor: Any, prompt: str, history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The chat-templated text of one observation: :func:`chat_messages` rendered by
    ``processor.apply_chat_template(..., tokenize=False, add_generation_prompt=True)``.

    Args:
        processor: a transformers processor (or tokenizer) with a chat template.
        prompt: the observation's text prompt, any ``str``.
        history: earlier turns (see :func:`chat_messages`); ``()`` for a single-step observation.

    Returns:
        The text with one image placeholder per user turn, before its prompt (Qwen-VL:
        ``<|vision_start|><|image_pad|><|vision_end|>``), ending with the assistant's
        generation prompt; the processor expands each placeholder to its image's tokens.

    Raises:
        ValueError: a malformed ``history``; from transformers, when the processor has no chat template.
    """
    return processor.apply_chat_template(chat_messages(prompt, history), tokenize=False,
                                         add_generation_prompt=True)


def check_max_history_turns(max_history_turns: Any) -> int | None:
    """``max_history_turns`` unchanged when it is None (all turns) or an int >= 0.

    Raises:
        ValueError: anything else.
    """
    if max_history_turns is not None and (isinstance(max_history_turns, bool)
                                          or not isinstance(max_history_turns, int) or max_history_turns < 0):
        raise ValueError(f"max_history_turns must be None (all turns) or an int >= 0 (the newest turns "
                         f"kept), got {max_history_turns!r}")
    return max_history_turns


def _observation_chat(processor: Any, observation: Mapping[str, Any], max_history_turns: int | None,
                      name: str) -> tuple[str, list[Any]]:
    missing = [k for k in ("image", "prompt") if k not in observation]
    if missing:
        raise KeyError(f"{name} lacks {missing}; expected the environments' "
                       f"{{'image': (H, W, 3) uint8, 'prompt': str}} (multi-step: plus 'history'), "
                       f"got keys {sorted(observation)}")
    check_max_history_turns(max_history_turns)
    history = _checked_history(observation.get("history", ()), f"{name}: history")
    if max_history_turns is not None:
        history = history[len(history) - max_history_turns:] if max_history_turns else ()
    text = chat_prompt(processor, observation["prompt"], history)
    return text, [turn["image"] for turn in history] + [observation["image"]]


def observation_chat(processor: Any, observation: Mapping[str, Any],
                     max_history_turns: int | None = None) -> tuple[str, list[Any]]:
    """The chat-templated text of one observation and its images, in placeholder order.

    Args:
        processor: a transformers processor with a chat template.
        observation: ``{"image", "prompt"}`` (single-step) or ``{"image", "prompt", "history"}``
            (multi-step, DESIGN.md section 7); other keys are ignored.
        max_history_turns: earlier turns to replay: None all, 0 none, ``N`` the newest ``N``.
            Dropped turns' images are not returned.

    Returns:
        ``(text, images)``: :func:`chat_prompt` of the prompt and the kept history, and the
        list of ``1 + kept turns`` images (each as given, e.g. ``(H, W, 3)`` uint8): the kept
        turns' images oldest first, then ``observation["image"]``.

    Raises:
        KeyError: the observation lacks ``"image"`` or ``"prompt"``.
        ValueError: a malformed ``history`` entry, or ``max_history_turns`` not None / an int >= 0.
    """
    return _observation_chat(processor, observation, max_history_turns, "observation")


def prompts_and_images(processor: Any, observations: Sequence[Mapping[str, Any]],
                       max_history_turns: int | None = None) -> tuple[list[str], list[Any]]:
    """:func:`observation_chat` of each observation, as a generation backend takes them.

    Returns:
        ``(prompts, images)``, one entry per observation. The images entry of an observation
        without ``"history"`` is its one image, exactly as single-step code always passed it;
        that of a multi-step observation is the list of its images.

    Raises:
        KeyError / ValueError: as :func:`observation_chat`, naming the observation's index.
    """
    prompts, images = [], []
    for i, obs in enumerate(observations):
        text, obs_images = _observation_chat(processor, obs, max_history_turns, f"observation {i}")
        prompts.append(text)
        images.append(obs_images if "history" in obs else obs_images[0])
    return prompts, images
