"""The generation-backend interface: chat-templated prompts + images in, completions out.

A backend samples ``n`` completions per prompt from a vision-language model and
returns, for every generated token, its id and its log-probability. Training
(GRPO/GSPO importance ratios) compares these log-probabilities with a
teacher-forced forward of the same model, so their definition is part of the
contract:

    ``logprobs[t] = log_softmax(z_t)[token_ids[t]]`` where ``z_t`` are the model's
    raw next-token logits at generation step ``t`` (fp32), i.e. at temperature 1,
    before temperature scaling, top-p filtering and the suppression of vision
    tokens. The sampling distribution is derived from ``z_t`` by those
    processors; the log-probability reported is the model's own.

This is the quantity :func:`agents.backends.hf.teacher_forced_logprobs` computes,
and what vLLM returns with ``logprobs_mode="raw_logprobs"``.

Backends: ``hf`` (:class:`agents.backends.hf.HFBackend`, transformers ``generate``)
and ``vllm`` (``agents.backends.vllm``, optional).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["SamplingParams", "EVAL_DECODING", "EVAL_BATCH_SIZE", "Completion", "AdapterRequest",
           "GenerationBackend", "ImageLike", "IMAGE_PLACEHOLDER", "prompt_image_lists",
           "VLLM_MAX_LORA_RANKS", "engine_lora_rank"]

# One image: a PIL.Image.Image or an (H, W, 3) uint8 numpy array. A prompt's ``images`` entry is
# one of these, or a list of them (one per image placeholder of the prompt, in order).
ImageLike = Any

IMAGE_PLACEHOLDER = "<|image_pad|>"  # Qwen-VL's image token: one per image in a chat-templated prompt


def prompt_image_lists(prompts: list[str], images: list[ImageLike | list[ImageLike]]) -> list[list[ImageLike]]:
    """The images of each prompt as a list (a single image becomes a list of one), checked against
    the prompt's placeholders.

    Returns:
        ``len(prompts)`` lists; list ``i`` holds the images of prompt ``i`` in placeholder order.

    Raises:
        ValueError: ``len(prompts) != len(images)``, or a prompt whose number of
            :data:`IMAGE_PLACEHOLDER` tokens differs from its number of images.
    """
    if len(prompts) != len(images):
        raise ValueError(f"got {len(prompts)} prompts but {len(images)} images; pass one image per prompt "
                         "(a list of images for a prompt with several image placeholders)")
    lists = [list(entry) if isinstance(entry, (list, tuple)) else [entry] for entry in images]
    for i, (prompt, entry) in enumerate(zip(prompts, lists)):
        n_placeholders = prompt.count(IMAGE_PLACEHOLDER)
        if n_placeholders != len(entry):
            raise ValueError(f"prompt {i} holds {n_placeholders} image placeholders ({IMAGE_PLACEHOLDER}) but "
                             f"{len(entry)} images were given for it; pass one image per placeholder, in order "
                             "(agents.chat.observation_chat builds both)")
    return lists


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled.

    Attributes:
        temperature: softmax temperature, >= 0. ``0`` means greedy decoding
            (``n`` must then be 1: greedy samples would be identical).
        top_p: nucleus-sampling mass in (0, 1]; 1 disables it.
        min_p: min-p sampling (Nguyen et al. 2024, "Turning up the heat"; transformers'
            ``MinPLogitsWarper``, vLLM's ``min_p``): tokens whose probability is below
            ``min_p`` times the most likely token's are dropped; in [0, 1), 0 disables it.
        max_new_tokens: most tokens generated per completion (the stop token counts), >= 1.
        n: completions per prompt (a GRPO group), >= 1.
        seed: seed of the sampling RNG for one ``generate`` call, or None for the
            backend's current RNG state. With a seed, the same prompts, images and
            parameters give the same completions on the same machine and backend.

    Raises:
        ValueError: any field out of range; the message names the value and the fix.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    min_p: float = 0.0
    max_new_tokens: int = 64
    n: int = 1
    seed: int | None = None

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1] (1 disables nucleus sampling), got {self.top_p!r}")
        if not (isinstance(self.min_p, (int, float)) and 0 <= self.min_p < 1):
            raise ValueError(f"min_p must be in [0, 1) (0 disables min-p sampling), got {self.min_p!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n (completions per prompt) must be an int >= 1, got {self.n!r}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError(f"greedy decoding (temperature=0) gives identical samples; got n={self.n}: "
                             "set temperature > 0 or n=1")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded under ``"decoding"`` in result JSON files (greedy drops the
        sampling knobs, which it ignores)."""
        if self.greedy:
            return {"greedy": True, "max_new_tokens": self.max_new_tokens, "n": self.n, "seed": self.seed}
        return {"greedy": False, "temperature": float(self.temperature), "top_p": float(self.top_p),
                "min_p": float(self.min_p), "max_new_tokens": self.max_new_tokens, "n": self.n,
                "seed": self.seed}


# The one evaluation decoding of every evaluation command, `evaluate` on a VLMAgent built
# without explicit settings, and the trainer's held-out evaluation (its eval_* fields
# default to these): the paper's, temperature 1.0 with min_p 0.1 (Schulze Buschoff et
# al. 2026; DESIGN.md section 5), at most 64 new tokens (a tagged answer takes under 20 tokens
# for the tiny tokenizer; reasoning prompts need more: pass max_new_tokens).
EVAL_DECODING = SamplingParams(temperature=1.0, top_p=1.0, min_p=0.1, max_new_tokens=64)
# Observations per act() call in evaluations. Part of the decoding: a seeded VLM agent
# re-seeds every call, so another batch size gives other samples.
EVAL_BATCH_SIZE = 32

# The LoRA rank limits a vLLM engine accepts (``vllm.config.lora.MaxLoRARanks``, vLLM 0.32); here so
# that configs are checked without importing vLLM.
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def engine_lora_rank(lora_r: int) -> int:
    """The smallest vLLM ``max_lora_rank`` that serves an adapter of rank ``lora_r``.

    Raises:
        ValueError: ``lora_r`` above vLLM's largest limit (512).
    """
    for limit in VLLM_MAX_LORA_RANKS:
        if lora_r <= limit:
            return limit
    raise ValueError(f"LoRA rank {lora_r} is above the largest rank vLLM serves ({VLLM_MAX_LORA_RANKS[-1]})")


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        text: the decoded completion, special tokens removed.
        token_ids: generated token ids, in order; a stop token (EOS / ``<|im_end|>``)
            that ended the completion is included, padding is not.
        logprobs: one float per entry of ``token_ids``: the model's log-probability
            of that token at temperature 1 (see the module docstring), fp32 precision.
        finish_reason: ``"stop"`` (a stop token was generated) or ``"length"``
            (``max_new_tokens`` reached).
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"

    @property
    def logprob(self) -> float:
        """Sum of ``logprobs``: the completion's log-probability under the model."""
        return float(sum(self.logprobs))


@dataclass(frozen=True)
class AdapterRequest:
    """Which LoRA adapter a ``generate`` call uses.

    Attributes:
        name: the adapter's name (HF: the PEFT adapter name on the model).
        path: folder of the adapter in standard PEFT format (``adapter_config.json``
            + ``adapter_model.safetensors``); backends that load adapters from disk
            (vLLM) need it, and HF loads it from there when ``name`` is not yet loaded.
        version: bumped whenever the adapter's weights change (training); vLLM caches
            adapters by integer id, so each (name, version) must get a new id.
    """

    name: str
    path: str | None = None
    version: int = 0


# What ``adapter=`` accepts: None (the base model, no adapter), a name, or a request.
AdapterLike = str | AdapterRequest | None


def as_adapter_request(adapter: AdapterLike) -> AdapterRequest | None:
    """Normalise ``adapter=``: None stays None, a str becomes ``AdapterRequest(name=...)``.

    Raises:
        TypeError: anything else.
    """
    if adapter is None or isinstance(adapter, AdapterRequest):
        return adapter
    if isinstance(adapter, str):
        return AdapterRequest(name=adapter)
    raise TypeError(f"adapter must be None, an adapter name (str) or an AdapterRequest, got {type(adapter).__name__}")


@runtime_checkable
class GenerationBackend(Protocol):
    """Samples completions from a vision-language model."""

    def generate(
        self,
        prompts: list[str],
        images: list[ImageLike | list[ImageLike]],
        params: SamplingParams,
        adapter: AdapterLike = None,
    ) -> list[list[Completion]]:
        """Sample ``params.n`` completions for each prompt.

        Args:
            prompts: chat-templated prompt texts (generation prompt included), each holding
                one image placeholder (``<|vision_start|><|image_pad|><|vision_end|>``) per image;
                a multi-turn chat (:func:`agents.chat.observation_chat`) holds several.
            images: one entry per prompt: one image (``PIL.Image.Image`` or (H, W, 3) uint8
                array), or a list of images, one per placeholder of the prompt, in order.
            params: sampling settings.
            adapter: None for the base model; else the LoRA adapter to generate with.

        Returns:
            ``len(prompts)`` lists of ``params.n`` :class:`Completion`, in prompt order.

        Raises:
            ValueError: ``len(prompts) != len(images)``, or a prompt whose placeholders and
                images differ in number (:func:`prompt_image_lists`).
        """
        ...
