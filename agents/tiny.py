"""The embedded default model ``tiny``: a small random Qwen2.5-VL built offline.

No weights can be downloaded here, so ``VLMAgent.from_pretrained("tiny")`` needs a
model that the project can make itself, in seconds, deterministically from a seed.
:func:`build_tiny` writes a complete Hugging Face checkpoint folder:

* ``config.json`` / ``model.safetensors``: a ``Qwen2_5_VLForConditionalGeneration``
  (:data:`TEXT_CONFIG`, :data:`VISION_CONFIG`) with random weights drawn from the
  seed (transformers' own ``_init_weights``, normal std 0.02), saved in fp32.
  The text head dimension is 32 (hidden 128 / 4 heads): vLLM's CPU attention
  supports head sizes 32/64/80/..., not 16. ``mrope_section`` [4, 6, 6] sums to
  head_dim / 2 as Qwen2.5-VL's multimodal rotary embedding requires.
* a byte-level BPE tokenizer (``Qwen2Tokenizer`` format, ``tokenizer.json``) trained
  with the ``tokenizers`` library on a small built-in corpus (the environments'
  prompts, answer strings, numbers, colour words). It uses Qwen2's pre-tokenizer,
  which isolates every digit, so numbers are always digit-by-digit tokens. It
  carries the Qwen2-VL special tokens and the Qwen2-VL chat template.
* a processor that needs no torchvision: the PIL ``Qwen2VLImageProcessorPil``
  (min/max pixels set so that a 256x256 image becomes 224x224, i.e. 16x16 patches
  of 14 px, merged 2x2 into **64 image tokens**), and no video processor.
  ``Qwen2_5_VLProcessor`` insists on a video processor, and every video processor
  in transformers 5 needs torchvision, so the folder names
  ``PaddleOCRVLProcessor`` as its processor class: a stock transformers processor
  with exactly an image processor and a tokenizer that expands ``<|image_pad|>``
  from ``image_grid_thw`` and returns ``mm_token_type_ids``, i.e. what
  ``Qwen2_5_VLProcessor`` does for images. Plain ``AutoProcessor.from_pretrained``
  therefore works with or without torchvision. (vLLM builds its own
  ``Qwen2_5_VLProcessor`` and needs a video processor: set that up where vLLM is
  installed, not here.)

The folder is cached under :func:`cache_dir` in ``tiny-seed{seed}-{recipe hash}``; a
change to the recipe (corpus, configs) gives a new folder, so a stale cache is
never used. Building writes into a temporary sibling folder and renames it into
place, so a crash or a concurrent build never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

from envs.atomic import atomic_directory

__all__ = [
    "tiny_model_path", "build_tiny", "cache_dir", "tiny_corpus",
    "SPECIAL_TOKENS", "CHAT_TEMPLATE", "TEXT_CONFIG", "VISION_CONFIG", "IMAGE_PIXELS",
]

# Bump when the recipe changes in a way the hash below cannot see (e.g. code).
_RECIPE_VERSION = 1

# Qwen2-VL's special tokens, in Qwen's order. The first ids of the vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# The Qwen2-VL-Instruct chat template, verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text model. head_dim = hidden_size / num_attention_heads = 32 (see module docstring).
TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
    "hidden_act": "silu",
    "use_sliding_window": False,
}

# Vision encoder: Qwen2.5-VL's ViT with window attention, two blocks (the second full).
VISION_CONFIG: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "out_hidden_size": TEXT_CONFIG["hidden_size"],
    "hidden_act": "silu",
}

# (min_pixels, max_pixels): smart_resize maps 256x256 to 224x224 -> 16x16 patches -> 64 tokens.
IMAGE_PIXELS = (56 * 56, 224 * 224)

_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "magenta", "pink",
            "brown", "white", "black", "grey", "gray")
_EXTRA_TEXT = (
    "You are a helpful assistant.",
    "system", "user", "assistant",
    "How many blocks are in the image? There are 3 blocks.",
    "What colour is the top block? The top block is blue.",
    "Where is the red block? Give its bounding box as x1, y1, x2, y2.",
    "The block is on the left. The block is on the right. The tower is stable. The tower will fall.",
    "<think> The top block is displaced to the left, so I move it right. </think>",
    "<answer>Yes</answer> <answer>No</answer> <answer>yes</answer> <answer>no</answer>",
)


def tiny_corpus() -> list[str]:
    """The tokenizer's training corpus: prompts, answers, numbers, colours (deterministic)."""
    from envs import prompts  # envs is light (no torch); the prompts are its public text

    texts = list(prompts.PROMPTS.values())
    texts += [prompts.LERER] + [prompts.prompt_for(t, reasoning=True) for t in prompts.PROMPTS]
    texts += list(_EXTRA_TEXT)
    texts += [f"{c} {c.capitalize()} the {c} block" for c in _COLOURS]
    # Digits are isolated by the pre-tokenizer; numbers still teach the tags and signs around them.
    texts += [f"<answer>{v}</answer> <answer> {v} </answer>" for v in range(-600, 601, 25)]
    texts += [f"<answer>{x}, {y}</answer> <answer>{x} {y}</answer>"
              for x in range(-600, 601, 150) for y in range(0, 1001, 250)]
    return texts


def _recipe() -> dict[str, Any]:
    return {
        "version": _RECIPE_VERSION,
        "corpus": tiny_corpus(),
        "special_tokens": SPECIAL_TOKENS,
        "chat_template": CHAT_TEMPLATE,
        "text": TEXT_CONFIG,
        "vision": VISION_CONFIG,
        "pixels": IMAGE_PIXELS,
    }


def _recipe_hash() -> str:
    blob = json.dumps(_recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def cache_dir() -> pathlib.Path:
    """Root of cubeworld's cache: ``$CUBEWORLD_CACHE``, else ``$XDG_CACHE_HOME/cubeworld``,
    else ``~/.cache/cubeworld``."""
    if os.environ.get("CUBEWORLD_CACHE"):
        return pathlib.Path(os.environ["CUBEWORLD_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "cubeworld"


def tiny_model_path(seed: int = 0, rebuild: bool = False) -> pathlib.Path:
    """Path of the cached tiny model for ``seed``, building it first if needed.

    Args:
        seed: weight seed (the tokenizer does not depend on it).
        rebuild: build again even if cached (the new folder replaces the old one).

    Returns:
        A folder loadable with ``AutoProcessor.from_pretrained`` and
        ``AutoModelForImageTextToText.from_pretrained``.

    Raises:
        ValueError: ``seed`` is not a non-negative int.
        OSError: the cache directory cannot be written.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    path = cache_dir() / f"tiny-seed{seed}-{_recipe_hash()}"
    if (path / "model.safetensors").is_file() and not rebuild:
        return path
    try:  # a folder without weights is no build of ours (every build is published whole): replace it
        with atomic_directory(path, overwrite=rebuild or path.exists()) as tmp:
            build_tiny(tmp, seed=seed)
    except FileExistsError:
        # Another process finished the same build first: theirs is identical, keep it.
        if not (path / "model.safetensors").is_file():
            raise
    return path


def _train_tokenizer():
    """Train the byte-level BPE; returns a ``Qwen2Tokenizer`` with the VL special tokens."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Same normaliser and pre-tokenizer as Qwen2Tokenizer builds on load, so the merges
    # learnt here are the merges it applies. The regex isolates each digit (\p{N}).
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(tiny_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["vocab"], merges=merges,
        unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        # Attribute names the processors look up (tokenizer.image_token, .image_token_id).
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
        model_max_length=TEXT_CONFIG["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )
    # Qwen2Tokenizer only registers its named special tokens as added (unsplittable)
    # tokens; the chat and vision markers must be too, or BPE splits "<|im_start|>".
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
                   special_tokens=True)
    return tok


def build_tiny(out_dir: str | os.PathLike, seed: int = 0) -> pathlib.Path:
    """Write the tiny model (weights from ``seed``), tokenizer and processor to ``out_dir``.

    Deterministic: the same ``seed`` gives byte-identical ``model.safetensors``. The
    global torch RNG is left as it was. Takes about a second on one CPU core.

    Args:
        out_dir: folder to write (created; existing files of the same names are overwritten).
        seed: weight seed.

    Returns:
        ``out_dir`` as a :class:`pathlib.Path`.
    """
    import torch
    from transformers import (
        GenerationConfig,
        PaddleOCRVLProcessor,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tok) // 64) * 64  # round up: embedding rows for every token id

    config = Qwen2_5_VLConfig(
        text_config={**TEXT_CONFIG, "vocab_size": vocab_size, "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
    )
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_PIXELS[0], max_pixels=IMAGE_PIXELS[1],
        patch_size=VISION_CONFIG["patch_size"], temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
    )
    processor = PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out
