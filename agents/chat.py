"""The chat a VLM sees for one observation: the one prompt builder of the project.

Everything that turns an observation's prompt into model input text builds it here:
:class:`agents.vlm.VLMAgent` (sampling, and the teacher-forced scoring that
:class:`agents.logprob.LogProbJudge` and training use), :mod:`evaluation.probes` and
:mod:`evaluation.attention` (hidden states and attention of the text the agent sees), and
:mod:`training.pretrain` (the tiny base is trained on it). So a model is trained, sampled,
scored and probed on the same text, byte for byte; ``tests/agents/test_chat.py`` pins it.

The chat is one user turn, the image first and then the prompt (the order of Qwen-VL's
model cards), followed by the assistant's generation prompt; the processor's own chat
template renders it (``apply_chat_template``, transformers).
"""

from __future__ import annotations

from typing import Any

__all__ = ["chat_messages", "chat_prompt"]


def chat_messages(prompt: str) -> list[dict[str, Any]]:
    """The conversation of one observation, in transformers' multimodal message format.

    Returns:
        ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]``
        (a new list each call: callers may extend it).
    """
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def chat_prompt(processor: Any, prompt: str) -> str:
    """The chat-templated text of one observation's ``prompt``: :func:`chat_messages` rendered by
    ``processor.apply_chat_template(..., tokenize=False, add_generation_prompt=True)``.

    Args:
        processor: a transformers processor (or tokenizer) with a chat template.
        prompt: the observation's text prompt, any ``str``.

    Returns:
        The text with one image placeholder before ``prompt`` (Qwen-VL:
        ``<|vision_start|><|image_pad|><|vision_end|>``), ending with the assistant's
        generation prompt; the processor expands the placeholder to the image's tokens.

    Raises:
        ValueError: from transformers, when the processor has no chat template.
    """
    return processor.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)
