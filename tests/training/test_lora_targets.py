"""LoRA targets of every supported generation: exactly which modules PEFT adapts, vision on and off.

Each row builds a tiny random model of one generation on the meta device (no weights, well
under a second), wraps it with PEFT using :func:`training.lora_targets.lora_target_regex` and
the default target modules, and compares the adapted module names with the set written out
here, per layer, from the transformers 5.24 module names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft import LoraConfig, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402

from training.config import DEFAULT_TARGET_MODULES  # noqa: E402
from training.lora_targets import lora_target_regex  # noqa: E402

TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1)
MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}  # head_dim 16
ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
DENSE_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# Head, embeddings, vision-language mergers, patch/position embeddings, MoE router and experts.
NEVER = re.compile(r"^lm_head$|embed_tokens|merger|patch_embed|pos_embed|\.mlp\.gate$|\.experts\b")


def _qwen2_vl():
    return transformers.Qwen2VLForConditionalGeneration(transformers.Qwen2VLConfig(
        text_config=dict(TEXT, rope_parameters=MROPE),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)))


def _qwen2_5_vl():
    return transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(
        text_config=dict(TEXT, rope_parameters=MROPE),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1])))


def _qwen3_vl_vision() -> dict:
    return dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                num_position_embeddings=16, deepstack_visual_indexes=[0, 1])


def _qwen3_vl():
    return transformers.Qwen3VLForConditionalGeneration(transformers.Qwen3VLConfig(
        text_config=dict(TEXT, head_dim=16), vision_config=_qwen3_vl_vision()))


def _qwen3_vl_moe():
    return transformers.Qwen3VLMoeForConditionalGeneration(transformers.Qwen3VLMoeConfig(
        text_config=dict(TEXT, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
        vision_config=_qwen3_vl_vision()))


def _project_tiny():
    """The project's own tiny base (agents/tiny.py), from its config: Qwen2.5-VL, 4 layers, 2 blocks."""
    from agents.tiny import TEXT_CONFIG, VISION_CONFIG

    return transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(
        text_config={**TEXT_CONFIG, "vocab_size": 128, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}, vision_config=dict(VISION_CONFIG),
        tie_word_embeddings=False))


@dataclass(frozen=True)
class Row:
    build: Callable[[], torch.nn.Module]
    layers: int
    language: tuple[str, ...]  # per decoder layer, under model.language_model.layers.<i>.
    blocks: int
    vision: tuple[str, ...]  # per vision block, under model.visual.blocks.<j>., with train_vision


ROWS = {
    "qwen2_vl": Row(_qwen2_vl, 2, ATTENTION + DENSE_MLP, 2,
                    ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")),
    "qwen2_5_vl": Row(_qwen2_5_vl, 2, ATTENTION + DENSE_MLP, 2,
                      ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")),
    "qwen3_vl": Row(_qwen3_vl, 2, ATTENTION + DENSE_MLP, 2,
                    ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2")),
    # Not a paper model: fused experts (nn.Parameter) and the router are not linear modules,
    # so the MoE layers get attention adapters only.
    "qwen3_vl_moe": Row(_qwen3_vl_moe, 2, ATTENTION, 2,
                        ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2")),
    "project_tiny": Row(_project_tiny, 4, ATTENTION + DENSE_MLP, 2,
                        ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")),
}


def _build(row: Row) -> torch.nn.Module:
    with torch.device("meta"):
        return row.build()


def _adapted(model: torch.nn.Module, train_vision: bool) -> set[str]:
    config = LoraConfig(r=2, lora_alpha=2, target_modules=lora_target_regex(DEFAULT_TARGET_MODULES, train_vision))
    peft_model = get_peft_model(model, config)
    prefix = "base_model.model."
    return {name[len(prefix):] for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def _expected(row: Row, train_vision: bool) -> set[str]:
    names = {f"model.language_model.layers.{i}.{s}" for i in range(row.layers) for s in row.language}
    if train_vision:
        names |= {f"model.visual.blocks.{j}.{s}" for j in range(row.blocks) for s in row.vision}
    return names


@pytest.mark.parametrize("train_vision", [False, True], ids=["text-only", "vision"])
@pytest.mark.parametrize("generation", list(ROWS))
def test_exactly_the_intended_modules_get_adapters(generation, train_vision):
    row = ROWS[generation]
    model = _build(row)
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    block_linear = {n for n in linear if n.startswith("model.visual.blocks.")}
    assert {n for n in _expected(row, True) if ".visual." in n} == block_linear, \
        "the table no longer lists every linear layer of the vision blocks (transformers renamed one?)"
    assert _expected(row, train_vision) <= linear

    adapted = _adapted(model, train_vision)

    assert adapted == _expected(row, train_vision)
    if not train_vision:
        assert not any("visual" in n for n in adapted)
    assert not {n for n in adapted if NEVER.search(n)}


@pytest.mark.parametrize("name", [
    "visual.blocks.3.mlp.fc1",  # transformers 4.x layout (no leading "model.")
    "model.visual.blocks.12.attn.qkv",
    "model.visual.blocks.0.mlp.linear_fc2",
])
def test_vision_block_linears_match_only_with_train_vision(name):
    assert re.fullmatch(lora_target_regex(DEFAULT_TARGET_MODULES, True), name)
    assert not re.fullmatch(lora_target_regex(DEFAULT_TARGET_MODULES, False), name)


@pytest.mark.parametrize("name", [
    "model.visual.merger.linear_fc1", "model.visual.deepstack_merger_list.2.linear_fc2",
    "model.visual.merger.mlp.0", "visual.merger.mlp.2", "model.visual.patch_embed.proj", "lm_head",
    "model.language_model.embed_tokens", "model.language_model.layers.0.mlp.gate",
])
def test_mergers_embeddings_and_head_never_match(name):
    assert not re.fullmatch(lora_target_regex(DEFAULT_TARGET_MODULES, True), name)


def test_target_names_are_literal():
    pattern = lora_target_regex(["self_attn.q_proj"], False)
    assert re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj")
    assert not re.fullmatch(pattern, "model.language_model.layers.0.self_attnXq_proj")


def test_trainer_reexports_it():
    from training import lora_targets, trainer

    assert trainer.lora_target_regex is lora_targets.lora_target_regex
    assert "lora_target_regex" in trainer.__all__
