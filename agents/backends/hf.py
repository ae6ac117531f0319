"""The ``hf`` generation backend: transformers ``generate`` with per-token log-probabilities.

:class:`HFBackend` batches prompts with left padding, samples with the stated
settings, suppresses the vision special tokens, and reports for every generated
token the model's raw (temperature-1) log-probability, as defined in
:mod:`agents.backends.base`. :func:`teacher_forced_logprobs` computes the same
quantity from one forward pass over prompt + completion; training uses it for
the new policy's log-probabilities, and the tests check that both agree within
1e-4 in fp32. :func:`group_teacher_forced_logprobs` computes the same for GRPO
groups (many completions of one prompt) with the prompt run once per group.

Two details of Qwen-VL models that both functions handle, because getting them
wrong fails silently:

* Qwen2.5-VL / Qwen3-VL place image tokens with 3-D (M-RoPE) positions computed
  from ``mm_token_type_ids`` and ``image_grid_thw``; without ``mm_token_type_ids``
  the forward falls back to 1-D text positions and every log-probability shifts.
  The processor returns it; a teacher-forced forward extends it with zeros (text)
  over the completion, as ``generate`` does step by step.
* A sampled ``<|image_pad|>`` (or another vision marker) in a completion makes a
  later forward over that text fail with "Image features and image tokens do not
  match"; such tokens are suppressed during generation.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .base import AdapterLike, Completion, ImageLike, SamplingParams, as_adapter_request, prompt_image_lists

__all__ = ["HFBackend", "teacher_forced_logprobs", "batch_teacher_forced_logprobs", "group_teacher_forced_logprobs",
           "supports_prompt_sharing", "vision_token_ids", "to_pil", "processor_inputs"]

# Token strings of Qwen2-VL / Qwen2.5-VL / Qwen3-VL that only the processor may place.
_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
_VISION_CONFIG_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def to_pil(image: ImageLike) -> Image.Image:
    """An RGB ``PIL.Image`` from a PIL image or an (H, W, 3) uint8 array.

    Raises:
        TypeError: neither a PIL image nor a numpy array.
        ValueError: an array that is not (H, W, 3) uint8.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image array must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
        return Image.fromarray(image, mode="RGB")
    raise TypeError(f"image must be a PIL.Image.Image or an (H, W, 3) uint8 numpy array, got {type(image).__name__}")


def vision_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Ids generation must never emit: the vision markers, and ids with no token.

    The vision markers are looked up by name in the tokenizer and by the model
    config's ``*_token_id`` fields. Rows of the embedding beyond the tokenizer's
    vocabulary (Qwen pads its vocabulary; so does ``tiny``) decode to nothing and
    are suppressed too.

    Returns:
        Sorted unique token ids.
    """
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in _VISION_TOKENS if t in vocab}
    config = model.config
    for name in _VISION_CONFIG_IDS:
        value = getattr(config, name, None)
        if isinstance(value, int):
            ids.add(value)
    n_rows = model.get_output_embeddings().weight.shape[0]
    ids.update(range(len(tokenizer), n_rows))
    return sorted(ids)


def processor_inputs(processor: Any, prompts: Sequence[str], images: Sequence[ImageLike | list[ImageLike]], device) -> dict:
    """Left-padded model inputs for ``B`` chat-templated ``prompts`` (:func:`agents.chat.observation_chat`)
    and their ``B`` images entries (one ``(H, W, 3)`` uint8 or PIL image, or a list of them, one per
    placeholder), on ``device``: the processor's outputs (``input_ids``, ``attention_mask`` ``(B, L)``
    int64; ``pixel_values``, ``image_grid_thw`` ``(total images, 3)`` in prompt then placeholder
    order) plus ``mm_token_type_ids`` ``(B, L)`` int64 (1 at image tokens).

    Raises:
        ValueError: ``len(prompts) != len(images)``; a prompt whose placeholders and images differ in number.
    """
    lists = prompt_image_lists(list(prompts), list(images))
    # The processor expands the placeholders of all prompts, in order, from one flat list of images.
    inputs = processor(images=[to_pil(im) for entry in lists for im in entry], text=list(prompts),
                       return_tensors="pt", padding=True, padding_side="left")
    if "mm_token_type_ids" not in inputs:
        # Processors that do not return it (older transformers) still let us build it: positions of the
        # image placeholder are image tokens (1), the rest text (0).
        image_token_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_token_id).long()
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}


def _model_dtype(model: Any) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def batch_teacher_forced_logprobs(
    model: Any,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[ImageLike | list[ImageLike]],
    completions: Sequence[Sequence[int]],
) -> list[torch.Tensor]:
    """Log-probabilities of given completions under ``model``, one forward pass for the batch.

    Each sequence is ``[left padding][prompt][completion][right padding]``; the
    attention mask and ``mm_token_type_ids`` (zeros over the completion) make the
    positions those ``generate`` used. Gradients flow (call under ``torch.no_grad()``
    when none are needed); dropout follows ``model.training``.

    Args:
        model: a Qwen-VL ``...ForConditionalGeneration`` (or a PEFT model wrapping one).
        processor: its processor.
        prompts: chat-templated prompt texts, one image placeholder per image.
        images: per prompt one image (PIL or (H, W, 3) uint8) or a list, one per placeholder.
        completions: generated token ids per prompt (may be empty).

    Returns:
        One float32 tensor per prompt, shape ``(len(completions[i]),)``: the raw
        (temperature-1) log-probability of each completion token.

    Raises:
        ValueError: the three sequences differ in length; placeholders and images differ in number.
    """
    if not (len(prompts) == len(images) == len(completions)):
        raise ValueError(f"prompts, images and completions must have equal lengths, got "
                         f"{len(prompts)}, {len(images)}, {len(completions)}")
    device = next(model.parameters()).device
    inputs = processor_inputs(processor, prompts, images, device)
    pad_id = processor.tokenizer.pad_token_id or 0
    max_len = max((len(c) for c in completions), default=0)
    if max_len == 0:
        return [torch.zeros(0, dtype=torch.float32, device=device) for _ in completions]
    batch = len(completions)
    comp = torch.full((batch, max_len), pad_id, dtype=inputs["input_ids"].dtype, device=device)
    comp_mask = torch.zeros((batch, max_len), dtype=inputs["attention_mask"].dtype, device=device)
    for i, ids in enumerate(completions):
        comp[i, : len(ids)] = torch.as_tensor(list(ids), dtype=comp.dtype)
        comp_mask[i, : len(ids)] = 1
    inputs["input_ids"] = torch.cat([inputs["input_ids"], comp], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], comp_mask], dim=1)
    inputs["mm_token_type_ids"] = torch.cat(
        [inputs["mm_token_type_ids"], torch.zeros_like(comp, dtype=inputs["mm_token_type_ids"].dtype)], dim=1)
    # Logits at position t predict token t+1: the last max_len+1 positions cover the completion;
    # computing the LM head only there keeps memory at batch x max_len x vocab.
    out = model(**inputs, use_cache=False, logits_to_keep=max_len + 1)
    logits = out.logits[:, :-1].float()
    token_logp = logits.gather(-1, comp.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return [token_logp[i, : len(ids)] for i, ids in enumerate(completions)]


def teacher_forced_logprobs(
    model: Any, processor: Any, prompt_text: str, image: ImageLike | list[ImageLike], completion_ids: Sequence[int]
) -> torch.Tensor:
    """Log-probabilities of ``completion_ids`` after ``prompt_text`` + ``image``: float32, shape ``(L,)``.

    The single-prompt form of :func:`batch_teacher_forced_logprobs` (see there).
    """
    return batch_teacher_forced_logprobs(model, processor, [prompt_text], [image], [completion_ids])[0]


# Models whose prompt K/V cache can be computed once and shared by a group's completions:
# full attention in every text layer, and 3-D rope positions from ``model.model.get_rope_index``.
_PROMPT_SHARING_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})


def _base_model(model: Any) -> Any:
    return model.get_base_model() if _is_peft(model) else model


def _shared_prompt_cache(model: Any):
    """An empty ``DynamicCache`` for ``model`` whose layers are all plain ``DynamicLayer``, or None."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=_base_model(model).config)
    if not all(type(layer) is DynamicLayer for layer in cache.layers):
        return None
    return cache


def supports_prompt_sharing(model: Any) -> bool:
    """Whether :func:`group_teacher_forced_logprobs` can share prompt passes on ``model`` (else it falls back).

    True for Qwen2-VL / Qwen2.5-VL / Qwen3-VL(-MoE) models (PEFT-wrapped or not)
    with full attention in every text layer and gradient checkpointing off: a
    prompt's K/V cache can then be expanded to its completions and the positions
    taken from the model's own ``get_rope_index``. Other models (sliding-window or
    linear-attention layers, other position schemes) would give wrong numbers.
    """
    base = _base_model(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in _PROMPT_SHARING_MODEL_TYPES:
        return False
    if not callable(getattr(getattr(base, "model", None), "get_rope_index", None)):
        return False
    checkpointing = ("is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing")
                     else "is_gradient_checkpointing")
    if getattr(base, checkpointing, False):
        # Checkpointed layers recompute (and would re-append) their cache entries in backward.
        return False
    text = config.get_text_config()
    if getattr(text, "use_sliding_window", False):
        return False
    if any(t != "full_attention" for t in (getattr(text, "layer_types", None) or ())):
        return False
    return _shared_prompt_cache(model) is not None


def group_teacher_forced_logprobs(
    model: Any,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[ImageLike | list[ImageLike]],
    groups: Sequence[Sequence[Sequence[int]]],
) -> list[list[torch.Tensor]]:
    """Log-probabilities of groups of completions, each group sharing one prompt: the prompt runs once.

    The same numbers as :func:`batch_teacher_forced_logprobs` over the prompt
    repeated once per completion (fp32: within ~1e-6), computed in two passes:
    the ``P`` prompts (and their images, through the vision tower) once each,
    keeping their K/V cache; then the cache is expanded to the ``N`` completions
    and only the completion tokens run. The positions of both passes are the
    model's own 3-D (M-RoPE) positions of ``[prompt][completion]``
    (``get_rope_index``), so image and text positions are those of the one-pass
    forward. Gradients flow through both passes (the prompt's cached K/V are part
    of the graph), so LoRA adapters of the language model and the vision tower
    get the same gradients as in the one-pass forward; LoRA dropout, when on, is
    drawn once per prompt instead of once per completion.

    Models that :func:`supports_prompt_sharing` rejects take the one-pass path
    (:func:`batch_teacher_forced_logprobs` with the prompts repeated).

    Args:
        model: a Qwen-VL ``...ForConditionalGeneration`` (or a PEFT model wrapping one).
        processor: its processor.
        prompts: chat-templated prompt texts, one image placeholder per image.
        images: per prompt one image or a list, one per placeholder.
        groups: per prompt, the completions (token ids; any lengths, empty included) to score.

    Returns:
        Per prompt, per completion, a float32 tensor of shape ``(len(completion),)``.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not (len(prompts) == len(images) == len(groups)):
        raise ValueError(f"prompts, images and groups must have equal lengths, got "
                         f"{len(prompts)}, {len(images)}, {len(groups)}")
    groups = [[list(c) for c in g] for g in groups]
    flat = [c for g in groups for c in g]
    device = next(model.parameters()).device
    max_len = max((len(c) for c in flat), default=0)
    if max_len == 0:
        return [[torch.zeros(0, dtype=torch.float32, device=device) for _ in g] for g in groups]
    cache = _shared_prompt_cache(model) if supports_prompt_sharing(model) else None
    if cache is None:
        rows = batch_teacher_forced_logprobs(
            model, processor, [p for p, g in zip(prompts, groups) for _ in g],
            [im for im, g in zip(images, groups) for _ in g], flat)
        return _regroup(rows, groups)
    # Scenes without completions are left out of both passes.
    scenes = [i for i, g in enumerate(groups) if g]
    inputs = processor_inputs(processor, [prompts[i] for i in scenes], [images[i] for i in scenes], device)
    counts = torch.tensor([len(groups[i]) for i in scenes], device=device)
    row_scene = torch.arange(len(scenes), device=device).repeat_interleave(counts)
    pad_id = processor.tokenizer.pad_token_id or 0
    n_rows = len(flat)
    ids_dtype = inputs["input_ids"].dtype
    comp = torch.full((n_rows, max_len), pad_id, dtype=ids_dtype, device=device)
    comp_mask = torch.zeros((n_rows, max_len), dtype=inputs["attention_mask"].dtype, device=device)
    for i, ids in enumerate(flat):
        comp[i, : len(ids)] = torch.as_tensor(ids, dtype=ids_dtype)
        comp_mask[i, : len(ids)] = 1
    # Positions of [prompt][completion inputs] per scene. Completion token t is fed at prompt_len + t
    # (t < max_len - 1: the last token is only predicted); a shorter completion's valid tokens are a
    # prefix, so its positions are those of the all-ones extension.
    prompt_len = inputs["input_ids"].shape[1]
    n_fed = max_len - 1

    def ext(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([t, torch.full((t.shape[0], n_fed), value, dtype=t.dtype, device=device)], dim=1)

    get_rope_index = _base_model(model).model.get_rope_index
    rope_inputs = {"input_ids": ext(inputs["input_ids"], pad_id),
                   "mm_token_type_ids": ext(inputs["mm_token_type_ids"], 0),
                   "attention_mask": ext(inputs["attention_mask"], 1),
                   **{k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
                      if k in inputs}}
    # Older transformers take no mm_token_type_ids (they find images from input_ids): pass what it names.
    accepted = inspect.signature(get_rope_index).parameters
    with torch.no_grad():
        positions, _ = get_rope_index(**{k: v for k, v in rope_inputs.items() if k in accepted})
    # 1. Prompt pass, once per scene: fills the cache; its last logits predict completion token 0.
    out = model(**inputs, position_ids=positions[:, :, :prompt_len], past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    first = out.logits[:, -1].float().log_softmax(-1)
    del out
    columns = [first[row_scene, comp[:, 0]].unsqueeze(1)]
    if n_fed > 0:
        # 2. Completion pass: the cache expanded to one row per completion (autograd sums the copies'
        # gradients back into the prompt pass).
        for layer in cache.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.repeat_interleave(counts, dim=0)
                layer.values = layer.values.repeat_interleave(counts, dim=0)
        attention_mask = torch.cat([inputs["attention_mask"].repeat_interleave(counts, dim=0),
                                    comp_mask[:, :n_fed]], dim=1)
        out = model(input_ids=comp[:, :n_fed], attention_mask=attention_mask,
                    position_ids=positions[:, :, prompt_len:].repeat_interleave(counts, dim=1),
                    past_key_values=cache, use_cache=True)
        logits = out.logits.float()
        del out
        target = comp[:, 1:].unsqueeze(-1)
        columns.append(logits.gather(-1, target).squeeze(-1) - logits.logsumexp(-1))
    token_logp = torch.cat(columns, dim=1)
    return _regroup([token_logp[i, : len(ids)] for i, ids in enumerate(flat)], groups)


def _regroup(rows: Sequence[torch.Tensor], groups: Sequence[Sequence[Any]]) -> list[list[torch.Tensor]]:
    out, start = [], 0
    for g in groups:
        out.append(list(rows[start:start + len(g)]))
        start += len(g)
    return out


def _is_peft(model: Any) -> bool:
    return type(model).__module__.startswith("peft.") and hasattr(model, "peft_config")


@contextlib.contextmanager
def adapter_context(model: Any, adapter: AdapterLike) -> Iterator[None]:
    """Run the body with ``adapter`` active on ``model`` (None: adapters disabled), then restore.

    Raises:
        ValueError: an adapter is requested but the model is not a PEFT model, or
            the adapter is not loaded and the request gives no ``path``.
    """
    request = as_adapter_request(adapter)
    if request is None:
        if _is_peft(model):
            with model.disable_adapter():
                yield
        else:
            yield
        return
    if not _is_peft(model):
        raise ValueError(f"adapter {request.name!r} requested, but the model has no LoRA adapters; "
                         "load one first (VLMAgent.load_adapter) or pass adapter=None")
    if request.name not in model.peft_config:
        if request.path is None:
            raise ValueError(f"adapter {request.name!r} is not loaded (loaded: {sorted(model.peft_config)}) "
                             "and the request gives no path to load it from")
        model.load_adapter(request.path, adapter_name=request.name)
    previous = model.active_adapter
    if previous == request.name:
        yield
        return
    # PEFT's set_adapter also flips requires_grad (the active adapter becomes trainable);
    # a temporary swap for generation must leave trainability as the trainer set it.
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.set_adapter(request.name)
    try:
        yield
    finally:
        model.set_adapter(previous)
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, p.requires_grad))


class HFBackend:
    """Generation with transformers ``model.generate``.

    Args:
        model: a Qwen2-VL / Qwen2.5-VL / Qwen3-VL ``...ForConditionalGeneration``,
            optionally wrapped in a ``peft.PeftModel``.
        processor: its processor (tokenizer + image processor).
        batch_size: most prompts per ``generate`` call (each expands to ``n`` rows).
    """

    name = "hf"

    def __init__(self, model: Any, processor: Any, batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.suppress_token_ids = vision_token_ids(model, processor.tokenizer)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = processor.tokenizer.eos_token_id
        self.eos_token_ids = set([eos] if isinstance(eos, int) else eos)
        self.pad_token_id = model.generation_config.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = processor.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = min(self.eos_token_ids)

    def generate(
        self,
        prompts: list[str],
        images: list[ImageLike | list[ImageLike]],
        params: SamplingParams,
        adapter: AdapterLike = None,
    ) -> list[list[Completion]]:
        """See :meth:`agents.backends.base.GenerationBackend.generate`.

        The model is put in eval mode for the call (LoRA dropout off) and restored
        after. With ``params.seed``, torch's RNG is seeded inside a fork, so the
        caller's global RNG state is unchanged.

        Raises:
            ValueError: ``len(prompts) != len(images)``; a prompt whose placeholders and images
                differ in number; an adapter that is not loaded.
        """
        prompt_image_lists(prompts, images)
        if not prompts:
            return []
        device = next(self.model.parameters()).device
        fork_devices = []
        if device.type == "cuda":
            fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
        was_training = self.model.training
        self.model.eval()
        results: list[list[Completion]] = []
        try:
            with torch.random.fork_rng(devices=fork_devices, enabled=params.seed is not None), \
                    adapter_context(self.model, adapter), torch.no_grad():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                for start in range(0, len(prompts), self.batch_size):
                    stop = start + self.batch_size
                    results += self._generate_batch(prompts[start:stop], images[start:stop], params, device)
        finally:
            self.model.train(was_training)
        return results

    def _generate_batch(self, prompts, images, params: SamplingParams, device) -> list[list[Completion]]:
        inputs = processor_inputs(self.processor, prompts, images, device)
        prompt_len = inputs["input_ids"].shape[1]
        # Every sampling knob is given explicitly: unset ones would be taken from the
        # checkpoint's generation_config (Qwen instruct models ship top_k=1, repetition_penalty=1.05).
        sampling = {} if params.greedy else {
            "temperature": params.temperature, "top_p": params.top_p, "top_k": 0,
            "min_p": params.min_p}
        out = self.model.generate(
            **inputs,
            do_sample=not params.greedy,
            **sampling,
            repetition_penalty=1.0,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            suppress_tokens=self.suppress_token_ids,
            eos_token_id=sorted(self.eos_token_ids),
            pad_token_id=self.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        generated = out.sequences[:, prompt_len:]
        # out.logits: one fp32 (rows, vocab) tensor per step, before any logits processor.
        # Reduced step by step: stacking them would double the largest buffer of the call
        # (rows x steps x vocab; ~1.2 GB for 64 rows x 32 steps of Qwen's 152k vocabulary).
        logp = torch.stack([
            step.gather(-1, generated[:, t:t + 1]).squeeze(-1) - step.logsumexp(-1)
            for t, step in enumerate(out.logits)
        ], dim=1).float().cpu()
        del out
        generated = generated.cpu()
        tokenizer = self.processor.tokenizer
        completions: list[Completion] = []
        for row in range(generated.shape[0]):
            ids = generated[row].tolist()
            length, finish = len(ids), "length"
            for t, tok in enumerate(ids):
                if tok in self.eos_token_ids:
                    length, finish = t + 1, "stop"
                    break
            ids = ids[:length]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(text=text, token_ids=ids, logprobs=logp[row, :length].tolist(),
                                          finish_reason=finish))
        n = params.n
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]
