"""``VLMAgent``: a Qwen-VL policy that answers the environments' observations.

Loads any Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint (local folder or hub id;
``"tiny"`` is the embedded random model of :mod:`agents.tiny`) through
``AutoProcessor`` and ``AutoModelForImageTextToText`` (safetensors only,
``trust_remote_code`` off), builds the chat (:mod:`agents.chat`: the earlier turns, then the
image and the prompt) with the processor's chat template, and samples answers through a
generation backend (:mod:`agents.backends`). Optional: a PEFT LoRA adapter
(load, swap, unload) and a 4-bit NF4 base (bitsandbytes).

    >>> agent = VLMAgent.from_pretrained("tiny", sampling=SamplingParams(max_new_tokens=16, seed=0))
    >>> agent.act([obs])                   # one answer per observation
    >>> agent.sample([obs], n=16)          # a GRPO group: 16 Completions with token ids and log-probs
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from .backends.base import EVAL_DECODING, AdapterRequest, Completion, GenerationBackend, SamplingParams
from .backends.vllm import MULTI_TURN_MAX_IMAGES, VLLM_EXTRA
from .backends.vllm_server import VLLMServerBackend
from .chat import chat_prompt, check_max_history_turns, prompts_and_images

__all__ = ["VLMAgent", "ModelNotFoundError", "load_processor"]

_QUANT_EXTRA = "pip install 'cubeworld[quant]'"
_MODEL_FIX = ("pass a local folder with config.json and *.safetensors weights, 'tiny', 'tiny-base', "
              "or a hub id available offline (in the Hugging Face cache)")


class ModelNotFoundError(FileNotFoundError):
    """No loadable checkpoint at a model name or path; the message names it and what to pass instead."""


def _locate_model(name_or_path: str | os.PathLike) -> str:
    """:func:`_resolve_path`, then a local path checked for a model before transformers sees it
    (transformers reports a missing folder as a malformed hub id)."""
    name = str(name_or_path)
    try:
        path = _resolve_path(name)
    except FileNotFoundError as exc:  # tiny-base:SEED not built yet; the message gives the command
        raise ModelNotFoundError(str(exc)) from None
    folder = pathlib.Path(path).expanduser()
    if folder.is_dir():
        missing = [what for what, ok in (("config.json", (folder / "config.json").is_file()),
                                         ("*.safetensors weights", any(folder.glob("*.safetensors")))) if not ok]
        if missing:
            hint = " (a PEFT adapter? give it as MODEL+adapter=DIR)" if (folder / "adapter_config.json").is_file() else ""
            raise ModelNotFoundError(f"model {name!r}: the folder holds no {' and no '.join(missing)}{hint}; "
                                     f"{_MODEL_FIX}")
        return str(folder)
    if folder.exists():
        raise ModelNotFoundError(f"model {name!r} is a file, not a model folder; {_MODEL_FIX}")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError:
        raise ModelNotFoundError(f"model {name!r}: no such folder (nor a hub id); {_MODEL_FIX}") from None
    return path


def _resolve_path(name_or_path: str | os.PathLike) -> str:
    """``"tiny"`` / ``"tiny:SEED"`` -> the cached tiny model folder; ``"tiny-base"`` /
    ``"tiny-base:SEED"`` -> the pre-trained tiny base (:mod:`agents.tiny_base`); anything else unchanged."""
    name = str(name_or_path)
    if name == "tiny-base" or name.startswith("tiny-base:"):
        from .tiny_base import tiny_base_path

        seed = name.partition(":")[2]
        if seed and not seed.isdigit():
            raise ValueError(f"bad model name {name!r}: use 'tiny-base' or 'tiny-base:SEED' with SEED a non-negative int")
        return str(tiny_base_path(int(seed) if seed else 0))
    if name == "tiny" or name.startswith("tiny:"):
        from .tiny import tiny_model_path

        seed = name.partition(":")[2]
        if seed and not seed.isdigit():
            raise ValueError(f"bad tiny model name {name!r}: use 'tiny' or 'tiny:SEED' with SEED a non-negative int")
        return str(tiny_model_path(int(seed) if seed else 0))
    return name


def load_processor(path: str) -> Any:
    """``AutoProcessor.from_pretrained(path)``, or an image-only processor where that needs torchvision.

    Qwen-VL processors ship a video processor, and every video processor in
    transformers 5 needs torchvision. Without torchvision this builds the same
    processing for images from the checkpoint's own files: the PIL image
    processor, the tokenizer and the chat template, in a stock transformers
    processor that expands ``<|image_pad|>`` from ``image_grid_thw`` and returns
    ``mm_token_type_ids`` (``PaddleOCRVLProcessor``; ``tiny`` is saved with it).

    Raises:
        OSError / ValueError: from transformers, when the folder or hub id holds no processor.
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except (ValueError, ImportError, OSError) as exc:
        # Only the missing-torchvision / missing-video-processor failure has a fallback.
        message = str(exc).lower()
        if is_torchvision_available() or not ("torchvision" in message or "video" in message):
            raise
    from transformers import AutoImageProcessor, AutoTokenizer, PaddleOCRVLProcessor

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    for attr, token in (("image_token", "<|image_pad|>"), ("video_token", "<|video_pad|>")):
        if getattr(tokenizer, attr, None) is None:
            # Qwen's own tokenizers leave these to the processor; PaddleOCRVLProcessor reads them here.
            setattr(tokenizer, attr, token)
            setattr(tokenizer, f"{attr}_id", tokenizer.convert_tokens_to_ids(token))
    image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", trust_remote_code=False)
    return PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=tokenizer.chat_template)


def _torch_dtype(dtype: Any, device: str):
    import torch

    if dtype is None:
        # fp32 on CPU keeps log-probabilities exact; bf16 on GPUs that support it.
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ValueError(f"dtype must be a torch.dtype or its name ('float32', 'bfloat16', ...), got {dtype!r}")


def _disable_cpu_4bit_repacking(model: Any) -> int:
    """Switch off bitsandbytes' CPU repacking of 4-bit weights; returns the number of layers touched.

    On a CPU with AVX512-BF16, ``bnb.nn.Linear4bit.forward`` in eval mode without
    gradients rewrites its weight in place into a packed layout for its fast
    kernels. A later training forward through the same layer then fails with "a
    view of a leaf Variable that requires grad is being used in an in-place
    operation". Alternating rollouts (eval) and updates (train) is the RL loop, so
    the repacking stays off; it only costs inference speed.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def _load_model(path: str, load_in_4bit: bool, device: str, dtype):
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if load_in_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"load_in_4bit=True needs bitsandbytes, which is not installed: {_QUANT_EXTRA}") from exc
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
            # The vision tower and LM head stay in full precision: small, and sensitive to quantisation.
            llm_int8_skip_modules=["visual", "lm_head"],
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    if load_in_4bit:
        _disable_cpu_4bit_repacking(model)
    else:
        model = model.to(device)
    return model.eval()


class VLMAgent:
    """A vision-language policy: observations in, sampled text answers out.

    Build it with :meth:`from_pretrained`. Attributes: ``model`` (the transformers
    model, a ``peft.PeftModel`` once an adapter is loaded), ``processor``,
    ``backend`` (a :class:`~agents.backends.base.GenerationBackend`), ``sampling``
    (default :data:`~agents.backends.base.EVAL_DECODING`, the paper's evaluation decoding),
    ``active_adapter`` (name or None), ``name_or_path``, ``max_history_turns`` (earlier turns
    of a multi-step observation replayed in its chat: None all, else the newest N).

    Seeding: with ``sampling.seed`` set, every :meth:`act` / :meth:`sample` call
    re-seeds the sampler with it, so the same batch gives the same answers on every
    call (evaluation is reproducible). A trainer that wants fresh randomness per
    step passes ``params`` with its own per-step seed (or ``seed=None``).
    """

    def __init__(self, model: Any, processor: Any, backend: GenerationBackend | None = None,
                 sampling: SamplingParams | None = None, name_or_path: str | None = None,
                 max_history_turns: int | None = None):
        from .backends.hf import HFBackend

        self.model = model
        self.processor = processor
        self.backend = backend if backend is not None else HFBackend(model, processor)
        self.sampling = sampling if sampling is not None else EVAL_DECODING
        self.name_or_path = name_or_path
        self.max_history_turns = check_max_history_turns(max_history_turns)
        # A PEFT model handed in (e.g. from TRL) keeps generating with its active adapter.
        loaded = list(getattr(model, "peft_config", None) or {})
        self._adapter_paths: dict[str, str | None] = dict.fromkeys(loaded)
        self._adapter_versions: dict[str, int] = dict.fromkeys(loaded, 0)
        self.active_adapter: str | None = model.active_adapter if loaded else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = "tiny",
        adapter: str | os.PathLike | None = None,
        load_in_4bit: bool = False,
        backend: str | GenerationBackend = "hf",
        sampling: SamplingParams | None = None,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
        seed: int | None = None,
        backend_options: Mapping[str, Any] | None = None,
        max_history_turns: int | None = None,
    ) -> VLMAgent:
        """Load a Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint as an agent.

        Args:
            name_or_path: local folder or hub id; ``"tiny"`` / ``"tiny:SEED"`` build or
                reuse the embedded tiny model (:func:`agents.tiny.tiny_model_path`).
            adapter: folder of a PEFT LoRA adapter to load and activate (name ``"default"``).
            load_in_4bit: quantise the language model to 4-bit NF4 (bitsandbytes).
            backend: ``"hf"`` (transformers ``generate``), ``"vllm"``, ``"vllm-server"`` (``backend_options``: ``urls``...), or a ready backend.
            sampling: default sampling settings for :meth:`act` / :meth:`sample` (default
                :data:`~agents.backends.base.EVAL_DECODING`: temperature 1.0, min_p 0.1, 64 tokens).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
            dtype: weights' dtype; default fp32 on CPU, bf16 on CUDA.
            batch_size: most prompts per ``generate`` call of the ``hf`` backend.
            seed: sampling seed; overrides ``sampling.seed`` when given. Every call is
                seeded with it, so the agent is a deterministic function of each batch.
            backend_options: keyword arguments of the ``vllm`` / ``vllm-server`` backend
                (:class:`~agents.backends.vllm.VLLMBackend`: ``max_lora_rank``, ``enforce_eager``,
                ``gpu_memory_utilization``...). With ``load_in_4bit`` on CUDA the engine quantises
                the same base in flight (``quantization="bitsandbytes"``) unless these say otherwise,
                and ``max_images_per_prompt`` is ``max_history_turns + 1`` (None: ``MULTI_TURN_MAX_IMAGES``, 8).
            max_history_turns: earlier turns of a multi-step observation replayed in the chat
                (:func:`agents.chat.observation_chat`): None all, 0 none, N the newest N.

        Raises:
            ImportError: ``load_in_4bit`` without bitsandbytes, or ``backend="vllm"``
                without vLLM; the message names the pip extra.
            ValueError: unknown backend name, bad dtype or bad ``max_history_turns``.
            ModelNotFoundError: (a FileNotFoundError) ``name_or_path`` is no model folder (config.json +
                safetensors), no embedded name, and no hub id that loads here (offline: in the cache).
        """
        import torch

        check_max_history_turns(max_history_turns)
        path = _locate_model(name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = _torch_dtype(dtype, device)
        if isinstance(backend, str) and backend not in ("hf", "vllm", "vllm-server"):
            raise ValueError(f"unknown backend {backend!r}; use 'hf', 'vllm' or 'vllm-server' (or pass a GenerationBackend)")
        vllm_backend_cls = None
        if backend == "vllm":  # fail before the (slow) model load
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                raise ImportError(f"backend='vllm' needs vLLM, which is not installed: {VLLM_EXTRA} on a GPU "
                                  "machine; on a CPU-only one, bash scripts/setup_vllm_env.sh builds .venv-vllm")
            from .backends.vllm import VLLMBackend as vllm_backend_cls
        try:
            processor = load_processor(path)
            model = _load_model(path, load_in_4bit, device, torch_dtype)
        except OSError as exc:  # transformers' not-found / offline errors: several lines about the hub
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0].rstrip(".")
            raise ModelNotFoundError(f"cannot load model {str(name_or_path)!r}: {reason}; {_MODEL_FIX}") from exc
        if backend == "hf":
            from .backends.hf import HFBackend

            backend_obj: GenerationBackend = HFBackend(model, processor, batch_size=batch_size)
        elif backend == "vllm":
            # Contract for agents/backends/vllm.py: built from the checkpoint folder, the
            # processor (chat template, vision token ids) and the dtype.
            options = dict(backend_options or {})
            if load_in_4bit and device.startswith("cuda"):
                options.setdefault("quantization", "bitsandbytes")
            options.setdefault("max_images_per_prompt", MULTI_TURN_MAX_IMAGES if max_history_turns is None
                               else max_history_turns + 1)
            backend_obj = vllm_backend_cls(model_path=path, processor=processor, dtype=torch_dtype, **options)
        elif backend == "vllm-server":
            backend_obj = VLLMServerBackend(model_path=path, processor=processor, **(backend_options or {}))
        else:
            backend_obj = backend
        if seed is not None:
            sampling = dataclasses.replace(sampling or EVAL_DECODING, seed=seed)
        agent = cls(model, processor, backend_obj, sampling, str(name_or_path), max_history_turns)
        if adapter is not None:
            agent.load_adapter(adapter)
        return agent

    # -- prompts -----------------------------------------------------------------------------

    def chat_prompt(self, prompt: str) -> str:
        """The chat-templated text for one observation's prompt: ``[image, prompt]`` as the user turn,
        followed by the assistant's generation prompt (:func:`agents.chat.chat_prompt`)."""
        return chat_prompt(self.processor, prompt)

    def prompts_and_images(self, observations: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Any]]:
        """:func:`agents.chat.prompts_and_images` of ``observations`` with ``self.max_history_turns``:
        per observation its prompt and one image, or a list of images for a multi-step one (its
        KeyError / ValueError for an observation without image or prompt, a malformed history)."""
        return prompts_and_images(self.processor, observations, self.max_history_turns)

    # -- acting ------------------------------------------------------------------------------

    def act(self, observations: Sequence[Mapping[str, Any]]) -> list[str]:
        """One sampled answer per observation (the first of ``self.sampling``, with n=1)."""
        if not observations:
            return []
        params = dataclasses.replace(self.sampling, n=1)
        return [group[0].text for group in self.sample(observations, params=params)]

    def sample(self, observations: Sequence[Mapping[str, Any]], n: int | None = None,
               params: SamplingParams | None = None) -> list[list[Completion]]:
        """``n`` completions per observation, with token ids and log-probabilities (a GRPO group each).

        Args:
            observations: environment observations.
            n: completions per observation; overrides ``params.n`` when given.
            params: sampling settings; default ``self.sampling``.

        Returns:
            ``len(observations)`` lists of ``n`` :class:`Completion`.
        """
        params = params if params is not None else self.sampling
        if n is not None:
            params = dataclasses.replace(params, n=n)
        prompts, images = self.prompts_and_images(observations)
        return self.backend.generate(prompts, images, params, adapter=self._adapter_request())

    def completion_logprobs(self, observations: Sequence[Mapping[str, Any]],
                            completions: Sequence[Sequence[int]]):
        """Teacher-forced log-probabilities of ``completions`` (token ids) under the current model and adapter.

        Consecutive entries with the same observation object (``observations[i] is
        observations[i - 1]``, as a GRPO batch repeats each scene's observation once
        per completion) form a group whose prompt and image run through the model
        once (:func:`~agents.backends.hf.group_teacher_forced_logprobs`); the
        numbers are those of the one-pass forward. Without such repeats every
        completion gets its own prompt, one batched forward.

        Returns:
            One float32 tensor of shape ``(len(completions[i]),)`` per observation,
            differentiable w.r.t. the trainable (adapter) parameters.
        """
        from .backends.hf import adapter_context, batch_teacher_forced_logprobs, group_teacher_forced_logprobs

        if len(observations) != len(completions):
            raise ValueError(f"got {len(observations)} observations but {len(completions)} completions")
        scenes: list[Mapping[str, Any]] = []
        groups: list[list[Sequence[int]]] = []
        for i, (obs, ids) in enumerate(zip(observations, completions)):
            if i > 0 and obs is observations[i - 1]:
                groups[-1].append(ids)
            else:
                scenes.append(obs)
                groups.append([ids])
        with adapter_context(self.model, self._adapter_request()):
            if len(scenes) == len(observations):
                prompts, images = self.prompts_and_images(observations)
                return batch_teacher_forced_logprobs(self.model, self.processor, prompts, images, completions)
            prompts, images = self.prompts_and_images(scenes)
            grouped = group_teacher_forced_logprobs(self.model, self.processor, prompts, images, groups)
            return [row for group in grouped for row in group]

    # -- adapters ----------------------------------------------------------------------------

    def _adapter_request(self) -> AdapterRequest | None:
        if self.active_adapter is None:
            return None
        name = self.active_adapter
        return AdapterRequest(name=name, path=self._adapter_paths.get(name), version=self._adapter_versions.get(name, 0))

    def _set_model(self, model: Any) -> None:
        self.model = model
        if hasattr(self.backend, "model"):
            self.backend.model = model  # the hf backend generates with the (now wrapped) model

    def load_adapter(self, path_or_config: Any, name: str = "default", trainable: bool = False) -> str:
        """Load a LoRA adapter (a PEFT folder) or create a fresh one (a ``peft.LoraConfig``), and activate it.

        Args:
            path_or_config: folder with ``adapter_config.json`` + ``adapter_model.safetensors``,
                or a ``peft.PeftConfig`` for a new adapter (LoRA B starts at zero, so a
                fresh adapter does not change outputs until trained).
            name: adapter name; must not be loaded already.
            trainable: leave the loaded adapter's weights trainable (a config's always are).

        Returns:
            ``name``.

        Raises:
            ValueError: ``name`` is already loaded.
            ImportError: peft is not installed (``pip install 'cubeworld[train]'``).
        """
        try:
            from peft import PeftConfig, PeftModel, get_peft_model
        except ImportError as exc:
            raise ImportError(f"LoRA adapters need peft: pip install 'cubeworld[train]' ({exc})") from exc
        is_peft = isinstance(self.model, PeftModel)
        if is_peft and name in self.model.peft_config:
            raise ValueError(f"an adapter named {name!r} is already loaded; pick another name or unload_adapter({name!r})")
        if isinstance(path_or_config, PeftConfig):
            if is_peft:
                self.model.add_adapter(name, path_or_config)
            else:
                self._set_model(get_peft_model(self.model, path_or_config, adapter_name=name))
            path = None
        else:
            path = str(pathlib.Path(path_or_config)) if isinstance(path_or_config, (str, os.PathLike)) else None
            if path is None:
                raise TypeError(f"path_or_config must be a folder path or a peft.PeftConfig, "
                                f"got {type(path_or_config).__name__}")
            if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "adapter_model.safetensors")):
                # Pickled adapter_model.bin files can run code on load: safetensors only.
                raise ValueError(f"no adapter_model.safetensors in {path!r}; adapters load from safetensors "
                                 "only (re-save with PeftModel.save_pretrained(..., safe_serialization=True))")
            if is_peft:
                self.model.load_adapter(path, adapter_name=name, is_trainable=trainable)
            else:
                self._set_model(PeftModel.from_pretrained(self.model, path, adapter_name=name,
                                                          is_trainable=trainable, use_safetensors=True))
        self._adapter_paths[name] = path
        self._adapter_versions[name] = 0
        self.set_adapter(name)
        return name

    def set_adapter(self, name: str | None) -> None:
        """Generate with adapter ``name`` from now on; None uses the base model (adapters kept loaded).

        Raises:
            ValueError: ``name`` is not loaded.
        """
        if name is None:
            self.active_adapter = None
            return
        loaded = sorted(getattr(self.model, "peft_config", {}) or {})
        if name not in loaded:
            raise ValueError(f"adapter {name!r} is not loaded (loaded: {loaded}); use load_adapter first")
        # Keep the adapter's trainability as it is: PEFT's set_adapter would make it trainable.
        flags = {n: p.requires_grad for n, p in self.model.named_parameters()}
        self.model.set_adapter(name)
        for n, p in self.model.named_parameters():
            p.requires_grad_(flags.get(n, p.requires_grad))
        self.active_adapter = name

    def mark_adapter_updated(self, name: str | None = None, path: str | os.PathLike | None = None) -> int:
        """Record that adapter ``name`` (default: the active one) changed; returns its new version.

        Backends that cache adapters (vLLM) see a new version and reload it; ``path``
        is where the new weights were saved, for backends that read adapters from disk.
        """
        name = name or self.active_adapter
        if name is None or name not in self._adapter_versions:
            raise ValueError(f"no loaded adapter {name!r} to mark as updated")
        self._adapter_versions[name] += 1
        if path is not None:
            self._adapter_paths[name] = str(path)
        return self._adapter_versions[name]

    def unload_adapter(self, name: str | None = None) -> None:
        """Remove adapter ``name``; with None, remove all and restore the plain base model (no merge).

        Raises:
            ValueError: ``name`` is not loaded.
        """
        loaded = list(getattr(self.model, "peft_config", {}) or {})
        if name is not None and name not in loaded:
            raise ValueError(f"adapter {name!r} is not loaded (loaded: {sorted(loaded)})")
        if name is None or loaded == [name]:
            if loaded:
                self._set_model(self.model.unload())
            self.active_adapter = None
            self._adapter_paths.clear()
            self._adapter_versions.clear()
            return
        self.model.delete_adapter(name)
        self._adapter_paths.pop(name, None)
        self._adapter_versions.pop(name, None)
        if self.active_adapter == name:
            self.active_adapter = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name_or_path!r}, backend={getattr(self.backend, 'name', type(self.backend).__name__)!r}, "
                f"adapter={self.active_adapter!r}, sampling={self.sampling})")
