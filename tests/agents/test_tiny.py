"""The embedded tiny model: deterministic build, cache layout, plain from_pretrained, no torchvision."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from agents import tiny  # noqa: E402


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = tiny.build_tiny(tmp_path / "a", seed=0)
    b = tiny.build_tiny(tmp_path / "b", seed=0)
    c = tiny.build_tiny(tmp_path / "c", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()  # seed: weights only


def test_build_leaves_global_rng_alone(tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.build_tiny(tmp_path / "m", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_cache_location_and_reuse(tiny_cache, tiny_path):
    assert tiny_path.parent == pathlib.Path(tiny_cache)
    assert tiny_path.name.startswith("tiny-seed0-")
    before = (tiny_path / "model.safetensors").stat().st_mtime_ns
    assert tiny.tiny_model_path(0) == tiny_path
    assert (tiny_path / "model.safetensors").stat().st_mtime_ns == before  # cached, not rebuilt
    # Atomic build: no temporary folders left next to the model.
    assert [p.name for p in pathlib.Path(tiny_cache).iterdir() if p.name.startswith(".")] == []


def test_rebuild_replaces_atomically(tiny_cache, tiny_path):
    data = (tiny_path / "model.safetensors").read_bytes()
    assert tiny.tiny_model_path(0, rebuild=True) == tiny_path
    assert (tiny_path / "model.safetensors").read_bytes() == data
    assert [p.name for p in pathlib.Path(tiny_cache).iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("env, expected", [
    ({"CUBEWORLD_CACHE": "/x/cw"}, "/x/cw"),
    ({"XDG_CACHE_HOME": "/x/xdg"}, "/x/xdg/cubeworld"),
    ({"HOME": "/x/home"}, "/x/home/.cache/cubeworld"),
])
def test_cache_dir_precedence(monkeypatch, env, expected):
    for var in ("CUBEWORLD_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert tiny.cache_dir() == pathlib.Path(expected)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        tiny.tiny_model_path(seed)


def test_loads_with_plain_from_pretrained(tiny_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    text = model.config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert head_dim == 32 and text.hidden_size // text.num_attention_heads == 32
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5_000_000
    # Weights are fp32 safetensors, no pickles.
    assert (tiny_path / "model.safetensors").is_file()
    assert not list(tiny_path.glob("*.bin"))
    assert model.get_output_embeddings().weight.shape[0] >= len(processor.tokenizer)
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        token = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
                 "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}[name]
        assert getattr(model.config, name) == processor.tokenizer.convert_tokens_to_ids(token)


def test_processor_needs_no_torchvision(tiny_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_path)
    assert getattr(processor, "video_processor", None) is None
    if importlib.util.find_spec("torchvision") is None:
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many blocks?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>How many blocks?<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor(images=[np.zeros((256, 256, 3), np.uint8)], text=[text], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_image_tokens = int((inputs["input_ids"] == image_id).sum())
    assert n_image_tokens == 64
    assert int(inputs["mm_token_type_ids"].sum()) == 64


def test_tokenizer_digits_specials_and_roundtrip(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    for number in ("-600", "1234567890", "35", "0"):
        pieces = [tok.decode([i]) for i in tok(number)["input_ids"]]
        digits = [p for p in pieces if p.strip("-+ ")]
        assert all(len(p.strip("-+ ")) == 1 for p in digits), (number, pieces)
    for special in tiny.SPECIAL_TOKENS:
        assert len(tok(special)["input_ids"]) == 1, special
    answer = "<answer>-35</answer>"
    assert tok.decode(tok(answer)["input_ids"]) == answer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # The env prompts are in the corpus: they compress well below one token per character.
    from envs.prompts import PROMPTS

    prompt = PROMPTS["top_block_x_only"]
    assert len(tok(prompt)["input_ids"]) < len(prompt) / 2.5
