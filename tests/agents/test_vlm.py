"""VLMAgent and the hf generation backend on the tiny model (CPU, fp32)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from agents.backends.base import AdapterRequest, Completion, GenerationBackend, SamplingParams  # noqa: E402
from agents.backends.hf import (  # noqa: E402
    HFBackend,
    batch_teacher_forced_logprobs,
    teacher_forced_logprobs,
    vision_token_ids,
)
from agents.vlm import VLMAgent, load_processor  # noqa: E402

TOL = 1e-4  # fp32 agreement between generate's log-probs and a teacher-forced forward


@pytest.fixture(scope="module")
def agent(tiny_path):
    """A shared agent without adapters; tests that add adapters build their own."""
    return VLMAgent.from_pretrained(str(tiny_path), sampling=SamplingParams(max_new_tokens=12, seed=0), device="cpu")


def _fresh_agent(tiny_path, **kw):
    return VLMAgent.from_pretrained(str(tiny_path), sampling=SamplingParams(max_new_tokens=12, seed=0),
                                    device="cpu", **kw)


def _lora_config():
    from peft import LoraConfig

    # Text attention only ("qkv"/"proj" are the vision tower's names).
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def _randomise_lora_b(model, std=0.5):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def test_tiny_name_resolves_and_acts(tiny_cache, tiny_path, env_observations):
    agent = VLMAgent.from_pretrained("tiny", sampling=SamplingParams(max_new_tokens=8, seed=0), device="cpu")
    assert agent.backend.name == "hf" and isinstance(agent.backend, GenerationBackend)
    answers = agent.act(env_observations)  # observations carry an "info" key: ignored
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert agent.act([]) == []


def test_observation_without_prompt_is_a_clear_error(agent):
    with pytest.raises(KeyError, match="prompt"):
        agent.act([{"image": np.zeros((256, 256, 3), np.uint8)}])


def test_seeded_sampling_is_deterministic(agent, env_observations):
    params = SamplingParams(temperature=1.0, max_new_tokens=12, n=2, seed=7)
    first = agent.sample(env_observations, params=params)
    second = agent.sample(env_observations, params=params)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in second]
    assert [[c.logprobs for c in g] for g in first] == [[c.logprobs for c in g] for g in second]
    other = agent.sample(env_observations, params=SamplingParams(temperature=1.0, max_new_tokens=12, n=2, seed=8))
    assert [[c.token_ids for c in g] for g in first] != [[c.token_ids for c in g] for g in other]
    # The caller's global RNG is not consumed by a seeded call.
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    agent.sample(env_observations[:1], params=params)
    assert torch.equal(torch.rand(2), expected)


def test_sample_groups_shapes_and_greedy(agent, env_observations):
    groups = agent.sample(env_observations, n=3)
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    for completion in (c for g in groups for c in g):
        assert isinstance(completion, Completion)
        assert 1 <= len(completion.token_ids) == len(completion.logprobs) <= 12
        assert all(lp <= 0.0 for lp in completion.logprobs)
        assert completion.finish_reason in ("stop", "length")
        assert completion.finish_reason == "length" or completion.token_ids[-1] in agent.backend.eos_token_ids
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    a = agent.sample(env_observations, params=greedy)
    b = agent.sample(env_observations, params=SamplingParams(temperature=0.0, max_new_tokens=8, seed=3))
    assert [g[0].token_ids for g in a] == [g[0].token_ids for g in b]


def test_logprobs_match_teacher_forced_forward(agent, env_observations):
    # Prompts of different lengths, so that generation batches with left padding.
    observations = [env_observations[0], {**env_observations[1], "prompt": "Look. " + env_observations[1]["prompt"]}]
    groups = agent.sample(observations, params=SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=1))
    prompts, images = agent.prompts_and_images(observations)
    flat = [(prompts[i], images[i], c) for i, g in enumerate(groups) for c in g]
    with torch.no_grad():
        forced = batch_teacher_forced_logprobs(agent.model, agent.processor, [f[0] for f in flat],
                                               [f[1] for f in flat], [f[2].token_ids for f in flat])
        single = teacher_forced_logprobs(agent.model, agent.processor, *flat[0][:2], flat[0][2].token_ids)
    for (_, _, completion), lp in zip(flat, forced):
        assert lp.dtype == torch.float32 and lp.shape == (len(completion.token_ids),)
        assert torch.allclose(lp, torch.tensor(completion.logprobs), atol=TOL, rtol=0)
    assert torch.allclose(single, torch.tensor(flat[0][2].logprobs), atol=TOL, rtol=0)


def test_generation_never_emits_vision_tokens(tiny_path, env_observations):
    agent = _fresh_agent(tiny_path)
    banned = vision_token_ids(agent.model, agent.processor.tokenizer)
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
    assert {agent.processor.tokenizer.convert_tokens_to_ids(t) for t in names} <= set(banned)
    # Make the raw model all but certain to pick a vision token: without suppression every
    # sampled token would be one.
    boost = torch.zeros(agent.model.get_output_embeddings().weight.shape[0])
    boost[banned] = 50.0
    handle = agent.model.get_output_embeddings().register_forward_hook(lambda m, i, out: out + boost)
    try:
        groups = agent.sample(env_observations, params=SamplingParams(max_new_tokens=24, n=3, seed=0))
        ids = [t for g in groups for c in g for t in c.token_ids]
        assert ids and not set(ids) & set(banned)
        assert not any("<|" in c.text for g in groups for c in g)
        # And a later forward over the completions works (no image-token mismatch).
        with torch.no_grad():
            agent.completion_logprobs(env_observations, [g[0].token_ids for g in groups])
    finally:
        handle.remove()


def test_lora_adapter_changes_outputs_and_unloads(tiny_path, env_observations, tmp_path):
    agent = _fresh_agent(tiny_path)
    base = agent.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    agent.load_adapter(_lora_config(), name="policy")
    assert agent.active_adapter == "policy"
    # A fresh LoRA (B = 0) is the identity.
    fresh = agent.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    assert [[c.token_ids for c in g] for g in fresh] == [[c.token_ids for c in g] for g in base]
    _randomise_lora_b(agent.model)
    adapted = agent.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    base_ids = [g[0].token_ids for g in base]
    with torch.no_grad():
        lp_adapted = agent.completion_logprobs(env_observations, base_ids)
        agent.set_adapter(None)
        lp_base = agent.completion_logprobs(env_observations, base_ids)
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(lp_adapted, lp_base))
    assert [[c.token_ids for c in g] for g in adapted] != [[c.token_ids for c in g] for g in base]
    # set_adapter(None) generates with the base weights, adapter still loaded.
    again = agent.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in base]

    # Log-probs still match a teacher-forced forward with the adapter active.
    agent.set_adapter("policy")
    with torch.no_grad():
        forced = agent.completion_logprobs(env_observations, [g[0].token_ids for g in adapted])
    for g, lp in zip(adapted, forced):
        assert torch.allclose(lp, torch.tensor(g[0].logprobs), atol=TOL, rtol=0)

    # Standard PEFT folder round trip: a new agent loading it samples the same completions.
    agent.model.save_pretrained(tmp_path / "adapter", selected_adapters=["policy"])
    saved = tmp_path / "adapter" / "policy"
    folder = saved if saved.is_dir() else tmp_path / "adapter"
    assert (folder / "adapter_model.safetensors").is_file()
    reloaded = _fresh_agent(tiny_path, adapter=str(folder))
    again = reloaded.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in adapted]

    # Unload everything: the plain base model again.
    agent.unload_adapter()
    assert agent.active_adapter is None and not hasattr(agent.model, "peft_config")
    restored = agent.sample(env_observations, params=SamplingParams(max_new_tokens=12, n=2, seed=0))
    assert [[c.token_ids for c in g] for g in restored] == [[c.token_ids for c in g] for g in base]


def test_an_agent_around_a_peft_model_generates_with_its_active_adapter(tiny_path, env_observations):
    """A PEFT model made elsewhere (e.g. by TRL) keeps its adapter when wrapped in a new VLMAgent."""
    donor = _fresh_agent(tiny_path)
    donor.load_adapter(_lora_config(), name="policy")
    _randomise_lora_b(donor.model)
    params = SamplingParams(max_new_tokens=12, n=2, seed=0)
    wrapped = VLMAgent(donor.model, donor.processor)
    assert wrapped.active_adapter == "policy"
    assert [[c.token_ids for c in g] for g in wrapped.sample(env_observations, params=params)] == \
        [[c.token_ids for c in g] for g in donor.sample(env_observations, params=params)]


def test_adapter_swap_keeps_trainability(tiny_path, env_observations):
    agent = _fresh_agent(tiny_path)
    agent.load_adapter(_lora_config(), name="policy")
    agent.load_adapter(_lora_config(), name="ref")
    agent.set_adapter("policy")
    flags = {n: p.requires_grad for n, p in agent.model.named_parameters()}
    assert any(v for n, v in flags.items() if ".policy." in n)
    agent.backend.generate(*agent.prompts_and_images(env_observations[:1]),
                           SamplingParams(max_new_tokens=4, seed=0), adapter=AdapterRequest("ref"))
    assert {n: p.requires_grad for n, p in agent.model.named_parameters()} == flags
    agent.unload_adapter("ref")
    assert list(agent.model.peft_config) == ["policy"]
    with pytest.raises(ValueError, match="not loaded"):
        agent.set_adapter("ref")
    with pytest.raises(ValueError, match="already loaded"):
        agent.load_adapter(_lora_config(), name="policy")
    assert agent.mark_adapter_updated() == 1


def test_hf_backend_input_errors(agent):
    backend = agent.backend
    with pytest.raises(ValueError, match="one image per prompt"):
        backend.generate(["a", "b"], [np.zeros((8, 8, 3), np.uint8)], SamplingParams())
    with pytest.raises(ValueError, match="uint8"):
        backend.generate([agent.chat_prompt("x")], [np.zeros((8, 8, 3), np.float32)], SamplingParams())
    with pytest.raises(ValueError, match="no LoRA adapters"):
        backend.generate([agent.chat_prompt("x")], [np.zeros((64, 64, 3), np.uint8)], SamplingParams(),
                         adapter="nope")
    assert backend.generate([], [], SamplingParams()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"n": 0}, "n "),
    ({"temperature": 0.0, "n": 4}, "greedy"),
    ({"seed": 1.5}, "seed"),
])
def test_sampling_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_4bit_without_bitsandbytes_names_the_extra(tiny_path):
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed; see test_4bit_runs_on_cpu")
    with pytest.raises(ImportError, match=r"cubeworld\[quant\]"):
        VLMAgent.from_pretrained(str(tiny_path), load_in_4bit=True, device="cpu")


def test_4bit_runs_on_cpu(tiny_path, env_observations):
    pytest.importorskip("bitsandbytes")
    agent = VLMAgent.from_pretrained(str(tiny_path), load_in_4bit=True, device="cpu",
                                     sampling=SamplingParams(max_new_tokens=4, seed=0))
    assert len(agent.act(env_observations)) == 2


def test_vllm_backend_missing_names_the_extra(tiny_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed; tests/agents/vllm covers the backend")
    with pytest.raises(ImportError, match=r"cubeworld\[vllm\]"):
        VLMAgent.from_pretrained(str(tiny_path), backend="vllm", device="cpu")


def test_unknown_backend_and_dtype(tiny_path):
    with pytest.raises(ValueError, match="unknown backend"):
        VLMAgent.from_pretrained(str(tiny_path), backend="onnx", device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        VLMAgent.from_pretrained(str(tiny_path), dtype="float33", device="cpu")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="fallback is for no torchvision")
def test_processor_fallback_for_qwen_checkpoints_without_torchvision(tiny_path, tmp_path, env_observations):
    # A checkpoint saved like the real Qwen ones names Qwen2_5_VLProcessor, whose
    # video processor needs torchvision; load_processor still gives an image processor.
    folder = tmp_path / "qwen-like"
    shutil.copytree(tiny_path, folder)
    for name in ("processor_config.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["processor_class"] = "Qwen2_5_VLProcessor"
        (folder / name).write_text(json.dumps(data))
    processor = load_processor(str(folder))
    reference = load_processor(str(tiny_path))
    agent = VLMAgent.from_pretrained(str(tiny_path), device="cpu")
    text = agent.chat_prompt(env_observations[0]["prompt"])
    a = processor(images=[env_observations[0]["image"]], text=[text], return_tensors="pt")
    b = reference(images=[env_observations[0]["image"]], text=[text], return_tensors="pt")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_custom_backend_instance_is_used(tiny_path, env_observations):
    class Echo:
        name = "echo"

        def generate(self, prompts, images, params, adapter=None):
            return [[Completion(text=f"<answer>{i}</answer>") for _ in range(params.n)] for i in range(len(prompts))]

    agent = VLMAgent.from_pretrained(str(tiny_path), backend=Echo(), device="cpu")
    assert agent.act(env_observations) == ["<answer>0</answer>", "<answer>1</answer>"]
    assert isinstance(HFBackend(agent.model, agent.processor), GenerationBackend)


@pytest.mark.parametrize("name", ["tiny:x", "tiny:-1"])
def test_bad_tiny_name(name):
    with pytest.raises(ValueError, match="tiny:SEED"):
        VLMAgent.from_pretrained(name, device="cpu")


def test_missing_models_name_the_value_and_what_to_pass(tmp_path, tiny_path):
    from agents.vlm import ModelNotFoundError

    fix = "pass a local folder with config.json and *.safetensors weights, 'tiny', 'tiny-base', or a hub id"
    (tmp_path / "empty").mkdir()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    cases = {str(tmp_path / "missing"): "no such folder", "./not/here/either": "no such folder",
             str(tmp_path / "empty"): "the folder holds no config.json and no *.safetensors weights",
             str(adapter): "holds no config.json (a PEFT adapter? give it as MODEL+adapter=DIR)",
             str(tiny_path / "config.json"): "is a file, not a model folder"}
    for name, what in cases.items():
        with pytest.raises(ModelNotFoundError) as info:
            VLMAgent.from_pretrained(name, device="cpu")
        message = str(info.value)
        assert repr(name) in message and what in message and fix in message and "\n" not in message
        assert isinstance(info.value, FileNotFoundError)  # callers that catch OSError keep working


def test_seed_argument_and_load_agent_spec(tiny_cache, tiny_path, env_observations):
    from agents import load_agent

    a = load_agent("vlm:tiny", seed=3, device="cpu", sampling=SamplingParams(max_new_tokens=6))
    b = VLMAgent.from_pretrained("tiny", seed=3, device="cpu", sampling=SamplingParams(max_new_tokens=6, seed=99))
    assert a.sampling.seed == b.sampling.seed == 3
    assert a.act(env_observations) == b.act(env_observations) == a.act(env_observations)


# -- multi-turn, multi-image chats (multi-step observations) ----------------------------------

def _multi_step(env_observations, n_turns: int) -> dict:
    """A multi-step observation over the two real scenes: ``n_turns`` earlier turns, then this one."""
    scenes = [o["image"] for o in env_observations]
    images = [scenes[0], scenes[1], np.ascontiguousarray(scenes[0][:, ::-1])]
    prompts = [env_observations[0]["prompt"], "It fell (reward -3.1). Try again.", "It fell. Try again."]
    history = tuple({"image": images[k], "prompt": prompts[k], "answer": f"<answer>{40 * k - 60}</answer>"}
                    for k in range(n_turns))
    return {"image": images[n_turns], "prompt": prompts[n_turns], "history": history}


def test_a_mixed_batch_of_single_and_multi_step_observations_is_one_generate_call(agent, env_observations,
                                                                                monkeypatch):
    calls = []
    generate = agent.backend.generate

    def counting(prompts, images, params, adapter=None):
        calls.append((prompts, images))
        return generate(prompts, images, params, adapter=adapter)

    monkeypatch.setattr(agent.backend, "generate", counting)
    answers = agent.act([env_observations[0], _multi_step(env_observations, 1), _multi_step(env_observations, 2)])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert len(calls) == 1
    prompts, images = calls[0]
    assert [p.count("<|image_pad|>") for p in prompts] == [1, 2, 3]
    assert images[0] is env_observations[0]["image"]  # single-step: the bare image, as before
    assert [len(entry) for entry in images[1:]] == [2, 3]


def test_multi_turn_logprobs_match_teacher_forcing(agent, env_observations):
    batch = [env_observations[1], _multi_step(env_observations, 1), _multi_step(env_observations, 2)]
    groups = agent.sample(batch, params=SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=3))
    completions = [c for g in groups for c in g]
    ids = [c.token_ids for c in completions]
    repeated = [obs for obs, g in zip(batch, groups) for _ in g]  # the same object per group: prompt shared
    with torch.no_grad():
        grouped = agent.completion_logprobs(repeated, ids)
        one_pass = agent.completion_logprobs([dict(obs) for obs in repeated], ids)
    for completion, a, b in zip(completions, grouped, one_pass):
        want = torch.tensor(completion.logprobs)
        assert torch.allclose(a, want, atol=TOL, rtol=0) and torch.allclose(b, want, atol=TOL, rtol=0)
    # The history's images reach the model: another oldest image changes the scores.
    obs = _multi_step(env_observations, 2)
    first = {**obs["history"][0], "image": np.ascontiguousarray(obs["history"][0]["image"][::-1])}
    with torch.no_grad():
        same, changed = agent.completion_logprobs([obs, {**obs, "history": (first, *obs["history"][1:])}],
                                                  [ids[-1], ids[-1]])
    assert torch.allclose(same, one_pass[-1], atol=TOL, rtol=0)
    assert (same - changed).abs().max() > 1e-3


def test_each_placeholder_expands_to_its_own_images_tokens(agent):
    import itertools

    from agents.backends.hf import processor_inputs

    rng = np.random.default_rng(0)
    # Sizes with distinct token counts, so that a misplaced image shows.
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((256, 256), (56, 56), (112, 168), (224, 112))]
    turns = tuple({"image": im, "prompt": f"turn {k}", "answer": "<answer>0</answer>"} for k, im in enumerate(images[1:3]))
    observations = [{"image": images[0], "prompt": "Q"}, {"image": images[3], "prompt": "again", "history": turns}]
    prompts, entries = agent.prompts_and_images(observations)
    inputs = processor_inputs(agent.processor, prompts, entries, "cpu")
    merge = agent.processor.image_processor.merge_size
    tokens = (inputs["image_grid_thw"].prod(-1) // merge**2).tolist()
    assert len(set(tokens)) == 4
    pad = agent.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    runs = [[len(list(run)) for tok, run in itertools.groupby(row.tolist()) if tok == pad] for row in inputs["input_ids"]]
    assert runs == [tokens[:1], tokens[1:]]
    assert inputs["mm_token_type_ids"].sum(-1).tolist() == [tokens[0], sum(tokens[1:])]
    with pytest.raises(ValueError, match=r"prompt 1 holds 3 image placeholders .* but 2 images"):
        processor_inputs(agent.processor, prompts, [entries[0], entries[1][:2]], "cpu")
    with pytest.raises(ValueError, match=r"prompt 0 holds 3 image placeholders .* but 1 images"):
        agent.backend.generate(prompts[1:], entries[:1], SamplingParams())
