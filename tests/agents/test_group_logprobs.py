"""Prompt sharing for GRPO groups: ``group_teacher_forced_logprobs`` and ``VLMAgent.completion_logprobs``.

The shared path (each prompt once, its K/V cache expanded to the group's
completions) must give the one-pass forward's log-probabilities and LoRA
gradients (fp32, CPU), for completions of different lengths, prompts of
different lengths, and Qwen2-VL / Qwen2.5-VL / Qwen3-VL.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from agents.backends import hf  # noqa: E402
from agents.backends.hf import (  # noqa: E402
    batch_teacher_forced_logprobs,
    group_teacher_forced_logprobs,
    supports_prompt_sharing,
)
from agents.vlm import VLMAgent  # noqa: E402

LOGP_TOL = 1e-5  # absolute, fp32
GRAD_TOL = 1e-5  # relative (per parameter tensor, Frobenius norm)

# Language-model projections and the vision tower's attention: gradients must reach both.
_TEXT_TARGETS = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
_VISION_TARGETS = r"^.*visual.*\.(qkv)$"


def _lora(model_or_agent, target_modules=f"(?:{_TEXT_TARGETS})|(?:{_VISION_TARGETS})"):
    """Attach a LoRA adapter with random (non-zero) B weights; only LoRA weights trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=target_modules)
    if isinstance(model_or_agent, VLMAgent):
        model_or_agent.load_adapter(config)
        model = model_or_agent.model
    else:
        model = get_peft_model(model_or_agent, config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@pytest.fixture(scope="module")
def lora_agent(tiny_path):
    from agents.backends.base import SamplingParams

    agent = VLMAgent.from_pretrained(str(tiny_path), sampling=SamplingParams(max_new_tokens=12, seed=0), device="cpu")
    _lora(agent)
    agent.model.train()
    return agent


@pytest.fixture(scope="module")
def scenes(env_observations):
    """Three observations, the third with a longer prompt (left padding in the prompt batch)."""
    a, b = env_observations
    return [a, b, {**a, "prompt": "Look closely at the picture. " + a["prompt"]}]


def _completions(lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(20, 500, (n,), generator=gen).tolist() for n in lengths]


# Completion lengths per scene: uneven groups, empty and one-token completions included.
GROUP_LENGTHS = [(5, 1, 9, 16), (0, 7), (3, 12, 12, 2, 8)]


def _groups(lengths=GROUP_LENGTHS):
    return [_completions(n, seed=i) for i, n in enumerate(lengths)]


def _lora_grads(model, rows):
    """Gradients of a loss that weights every token differently, then zeroed."""
    gen = torch.Generator().manual_seed(1)
    loss = sum((r * torch.randn(r.shape, generator=gen)).sum() for r in rows)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_rows_close(expected, actual, tol=LOGP_TOL):
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert a.dtype == torch.float32 and a.shape == e.shape
        assert torch.allclose(a, e, atol=tol, rtol=0), float((a - e).abs().max())


def _assert_grads_close(expected, actual):
    assert expected and set(expected) == set(actual)
    for name, g in expected.items():
        rel = float((actual[name] - g).norm() / g.norm().clamp_min(1e-30))
        assert rel <= GRAD_TOL, (name, rel)


def _one_pass(model, processor, prompts, images, groups):
    flat_prompts = [p for p, g in zip(prompts, groups) for _ in g]
    flat_images = [im for im, g in zip(images, groups) for _ in g]
    return batch_teacher_forced_logprobs(model, processor, flat_prompts, flat_images, [c for g in groups for c in g])


def test_shared_matches_one_pass_with_lora(lora_agent, scenes):
    model, processor = lora_agent.model, lora_agent.processor
    assert supports_prompt_sharing(model)
    prompts, images = lora_agent.prompts_and_images(scenes)
    groups = _groups()
    expected = _one_pass(model, processor, prompts, images, groups)
    expected_grads = _lora_grads(model, expected)
    shared = group_teacher_forced_logprobs(model, processor, prompts, images, groups)
    assert [len(g) for g in shared] == [len(g) for g in groups]
    rows = [r for g in shared for r in g]
    _assert_rows_close(expected, rows)
    grads = _lora_grads(model, rows)
    _assert_grads_close(expected_grads, grads)
    # Both the language model's and the vision tower's adapters are reached.
    assert any("visual" in n for n in grads) and any("visual" not in n for n in grads)


def test_completion_logprobs_shares_repeated_observations(lora_agent, scenes, monkeypatch):
    groups = _groups()
    obs_grouped = [scenes[i] for i, g in enumerate(groups) for _ in g]  # the same object per group
    obs_copies = [dict(o) for o in obs_grouped]  # equal contents, distinct objects: never grouped
    ids = [c for g in groups for c in g]
    calls = []
    real = hf.group_teacher_forced_logprobs
    monkeypatch.setattr(hf, "group_teacher_forced_logprobs", lambda *a, **k: calls.append(a[4]) or real(*a, **k))

    expected = lora_agent.completion_logprobs(obs_copies, ids)
    assert calls == []
    expected_grads = _lora_grads(lora_agent.model, expected)
    rows = lora_agent.completion_logprobs(obs_grouped, ids)
    assert [len(g) for g in calls[0]] == [4, 2, 5]
    _assert_rows_close(expected, rows)
    _assert_grads_close(expected_grads, _lora_grads(lora_agent.model, rows))


def test_groups_split_and_mixed_with_single_observations(lora_agent, scenes):
    a, b, c = scenes
    observations = [a, a, b, c, c, c, a]  # the last `a` is not next to the others: its own group
    ids = _completions((4, 6, 3, 1, 8, 2, 5), seed=3)
    with torch.no_grad():
        rows = lora_agent.completion_logprobs(observations, ids)
        expected = lora_agent.completion_logprobs([dict(o) for o in observations], ids)
    _assert_rows_close(expected, rows)


def test_ungrouped_inputs_take_the_one_pass_path(lora_agent, scenes, monkeypatch):
    a, b, _ = scenes
    observations = [a, b, a]  # repeats that are not consecutive
    ids = _completions((4, 6, 3), seed=4)

    def fail(*args, **kwargs):
        raise AssertionError("ungrouped inputs must not take the shared path")

    monkeypatch.setattr(hf, "group_teacher_forced_logprobs", fail)
    with torch.no_grad():
        rows = lora_agent.completion_logprobs(observations, ids)
        prompts, images = lora_agent.prompts_and_images(observations)
        expected = batch_teacher_forced_logprobs(lora_agent.model, lora_agent.processor, prompts, images, ids)
    assert all(torch.equal(r, e) for r, e in zip(rows, expected))


def test_unsupported_model_falls_back_to_one_pass(lora_agent, scenes, monkeypatch):
    model, processor = lora_agent.model, lora_agent.processor
    prompts, images = lora_agent.prompts_and_images(scenes)
    groups = _groups()
    with torch.no_grad():
        expected = _one_pass(model, processor, prompts, images, groups)
    monkeypatch.setattr(hf, "_PROMPT_SHARING_MODEL_TYPES", frozenset())
    assert not supports_prompt_sharing(model)
    with torch.no_grad():
        rows = [r for g in group_teacher_forced_logprobs(model, processor, prompts, images, groups) for r in g]
    assert all(torch.equal(r, e) for r, e in zip(rows, expected))


def test_sliding_window_and_checkpointing_are_unsupported(lora_agent, monkeypatch):
    model = lora_agent.model
    text_config = model.get_base_model().config.get_text_config()
    with monkeypatch.context() as m:
        m.setattr(text_config, "use_sliding_window", True)
        assert not supports_prompt_sharing(model)
    with monkeypatch.context() as m:
        m.setattr(text_config, "layer_types", ["sliding_attention"] * len(text_config.layer_types))
        assert not supports_prompt_sharing(model)
    with monkeypatch.context() as m:
        m.setattr(model.get_base_model().model.language_model, "gradient_checkpointing", True)
        assert not supports_prompt_sharing(model)
    assert supports_prompt_sharing(model)


def test_empty_inputs_and_errors(lora_agent, scenes):
    model, processor = lora_agent.model, lora_agent.processor
    prompts, images = lora_agent.prompts_and_images(scenes[:2])
    out = group_teacher_forced_logprobs(model, processor, prompts, images, [[[], []], [[]]])
    assert [[r.shape for r in g] for g in out] == [[(0,), (0,)], [(0,)]]
    assert group_teacher_forced_logprobs(model, processor, [], [], []) == []
    with pytest.raises(ValueError, match="equal lengths"):
        group_teacher_forced_logprobs(model, processor, prompts, images, [[[1]]])
    with pytest.raises(ValueError, match="observations"):
        lora_agent.completion_logprobs(scenes[:2], [[1]])


# -- other Qwen-VL generations, as tiny random models that read the tiny processor's inputs --------

_TOKEN_IDS = dict(image_token_id=12, video_token_id=13, vision_start_token_id=9, vision_end_token_id=10)
_TEXT = dict(vocab_size=576, hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=4096, pad_token_id=0,
             bos_token_id=0, eos_token_id=2)


def _qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}
    vision = dict(depth=2, embed_dim=64, hidden_size=128, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, mlp_ratio=2)
    return Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config={**_TEXT, "rope_parameters": rope},
                                                         vision_config=vision, **_TOKEN_IDS))


def _qwen3_vl():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True}
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=128, num_position_embeddings=256,
                  deepstack_visual_indexes=[0])
    return Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config={**_TEXT, "head_dim": 32, "rope_parameters": rope},
                                                         vision_config=vision, **_TOKEN_IDS))


@pytest.mark.parametrize("build", [_qwen2_vl, _qwen3_vl], ids=["qwen2_vl", "qwen3_vl"])
def test_other_qwen_vl_generations(build, lora_agent, scenes):
    torch.manual_seed(0)
    model = _lora(build().train(), target_modules=_TEXT_TARGETS)
    assert supports_prompt_sharing(model)
    processor = lora_agent.processor
    prompts, images = lora_agent.prompts_and_images(scenes)
    groups = _groups()
    expected = _one_pass(model, processor, prompts, images, groups)
    expected_grads = _lora_grads(model, expected)
    rows = [r for g in group_teacher_forced_logprobs(model, processor, prompts, images, groups) for r in g]
    _assert_rows_close(expected, rows)
    _assert_grads_close(expected_grads, _lora_grads(model, rows))
