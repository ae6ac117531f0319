"""A random-weight Qwen2.5-VL of real size (7B shape by default), for GPU benchmarks without downloads.

    python benchmarks/trainer_vs_trl.py make-random-model DIR [--config-json FILE] [--set KEY=VALUE]

The model gets transformers' random init in bf16 and the tokenizer and image
processor of the embedded ``tiny`` model (vision token ids rewired to match).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time
from typing import Any

# Qwen/Qwen2.5-VL-7B-Instruct's config.json, in transformers 5's nested layout (text_config,
# rope_parameters). Token ids are replaced by the tokenizer's in make_random_model.
QWEN25_VL_7B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "tie_word_embeddings": False,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "text_config": {
        "model_type": "qwen2_5_vl_text",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 18944,
        "max_position_embeddings": 128000,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {"mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_window": 32768,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 152064,
    },
    "vision_config": {
        "model_type": "qwen2_5_vl_vision",
        "depth": 32,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "hidden_act": "silu",
        "hidden_size": 1280,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 112,
    },
}


def _set_path(config: dict[str, Any], dotted: str, raw: str) -> None:
    import yaml

    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(raw)


def make_random_model(out: str, config_json: str | None, overrides: list[str], seed: int = 0) -> pathlib.Path:
    """A random-weight Qwen2.5-VL with the 7B shape (or ``config_json``'s), the ``tiny`` tokenizer and processor."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    from agents.tiny import tiny_model_path
    from envs.atomic import atomic_directory

    tiny = pathlib.Path(tiny_model_path(0))
    raw = json.loads(pathlib.Path(config_json).read_text()) if config_json else json.loads(json.dumps(QWEN25_VL_7B_CONFIG))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. text_config.num_hidden_layers=2")
        _set_path(raw, key, value)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    raw.update(ids)
    text = raw.setdefault("text_config", raw)  # a legacy flat config keeps text fields at the top
    text.update(bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    out_dir = pathlib.Path(out)
    with atomic_directory(out_dir) as tmp:  # the folder appears complete or not at all (it replaces an old one)
        (tmp / "config.json").write_text(json.dumps(raw, indent=2))
        config = AutoConfig.from_pretrained(str(tmp))
        torch.manual_seed(seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
        n = sum(p.numel() for p in model.parameters())
        model.save_pretrained(str(tmp), safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "processor_config.json",
                     "preprocessor_config.json", "generation_config.json"):
            if (tiny / name).exists():
                shutil.copy(tiny / name, tmp / name)
    print(f"wrote {out_dir}: {type(model).__name__}, {n / 1e9:.2f}B parameters, bf16, random init on {device} "
          f"in {time.perf_counter() - t0:.0f} s; tokenizer and processor from {tiny}")
    return out_dir
