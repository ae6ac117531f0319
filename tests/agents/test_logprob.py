"""LogProbJudge (Yes/No by normalised answer probabilities) and VLM specs with adapters, on the tiny model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import envs  # noqa: E402,F401
from agents import LogProbJudge, VLMAgent, load_agent  # noqa: E402
from agents.backends.base import SamplingParams  # noqa: E402
from agents.factory import ADAPTER_SEPARATOR, check_agent_spec, split_adapter  # noqa: E402
from agents.logprob import NO_ANSWER, YES_ANSWER  # noqa: E402


def _observations(env_id, seeds):
    env = gym.make(env_id)
    out = []
    for s in seeds:
        obs, info = env.reset(seed=s)
        out.append({**obs, "info": info})
    env.close()
    return out


@pytest.fixture(scope="module")
def stability_observations():
    return _observations("TopBlockStability-v0", range(5))


@pytest.fixture(scope="module")
def judge(tiny_path):
    return LogProbJudge(VLMAgent.from_pretrained(str(tiny_path), device="cpu"), batch_size=2)


@pytest.fixture(scope="module")
def adapter_dir(tiny_path, tmp_path_factory):
    """A real PEFT LoRA adapter of the tiny model with random (non-zero) B matrices, saved to a folder."""
    from peft import LoraConfig

    agent = VLMAgent.from_pretrained(str(tiny_path), device="cpu")
    agent.load_adapter(LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in agent.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    folder = tmp_path_factory.mktemp("adapter")
    agent.model.save_pretrained(str(folder), safe_serialization=True)
    assert (folder / "adapter_model.safetensors").is_file()
    return folder


def _independent_logprob(agent, obs, text):
    """Sum of token log-probs of ``text`` after the chat prompt: one plain forward over prompt + completion,
    log_softmax of the full logits (no helper of agents.backends.hf)."""
    from PIL import Image

    tok = agent.processor.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    inputs = agent.processor(images=[Image.fromarray(obs["image"])], text=[agent.chat_prompt(obs["prompt"])],
                             return_tensors="pt")
    prompt_ids = inputs["input_ids"]
    mm = inputs.get("mm_token_type_ids")
    if mm is None:
        mm = (prompt_ids == tok.convert_tokens_to_ids("<|image_pad|>")).long()
    full = torch.cat([prompt_ids, torch.tensor([ids])], dim=1)
    with torch.no_grad():
        logits = agent.model(input_ids=full, attention_mask=torch.ones_like(full),
                             pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                             mm_token_type_ids=torch.cat([mm, torch.zeros((1, len(ids)), dtype=mm.dtype)], 1),
                             use_cache=False).logits[0].double()
    logp = logits.log_softmax(-1)
    start = prompt_ids.shape[1]
    return float(sum(logp[start - 1 + t, token] for t, token in enumerate(ids)))


def test_scored_completions_are_the_full_answers_with_end_of_turn(judge):
    tok = judge.agent.processor.tokenizer
    for answer in (YES_ANSWER, NO_ANSWER):
        expected = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert judge.completion_ids[answer] == expected
    bare = LogProbJudge(judge.agent, end_token=None)
    assert bare.completion_ids[YES_ANSWER] == judge.completion_ids[YES_ANSWER][:-1]
    with pytest.raises(ValueError, match="not a token"):
        LogProbJudge(judge.agent, end_token="<|no such token|>")


def test_probabilities_are_the_normalised_teacher_forced_probabilities(judge, stability_observations):
    obs = stability_observations
    logp = judge.log_probabilities(obs)
    p_yes = judge.probabilities(obs)
    assert logp.shape == (5, 2) and logp.dtype == np.float64 and (logp < 0).all()
    assert p_yes.shape == (5,) and p_yes.dtype == np.float64
    independent = np.array([[_independent_logprob(judge.agent, o, a + "<|im_end|>") for a in (YES_ANSWER, NO_ANSWER)]
                            for o in obs])
    np.testing.assert_allclose(logp, independent, atol=1e-4, rtol=0)
    p = np.exp(independent)
    np.testing.assert_allclose(p_yes, p[:, 0] / p.sum(1), atol=1e-5, rtol=0)
    np.testing.assert_allclose(p_yes + p[:, 1] / p.sum(1), 1.0, atol=1e-12)
    assert np.ptp(p_yes) > 0  # the image and scene matter: not one number for every observation
    # act: the argmax, on a batch that spans several teacher-forced chunks (batch_size=2).
    assert judge.act(obs) == [YES_ANSWER if lp[0] >= lp[1] else NO_ANSWER for lp in logp]
    assert judge.act([]) == [] and judge.probabilities([]).shape == (0,)


def test_non_binary_observations_are_a_clear_error(judge):
    obs = _observations("SideBlockXY-v0", [0])
    with pytest.raises(ValueError, match="side_block_xy.*'xy'"):
        judge.act(obs)
    with pytest.raises(ValueError, match="with prompt"):
        judge.probabilities([{k: v for k, v in obs[0].items() if k != "info"}])


def test_icml_pre_prompt_is_scored_alone_with_bare_answers(judge):
    from envs.prompts import TOWER_STABILITY, TOWER_STABILITY_PRE_PROMPT

    obs = _observations("TowerStability-v0", [0, 1])
    assert obs[0]["prompt"] == TOWER_STABILITY
    scored, texts, answers = judge.scoring_plan(obs[0])
    assert scored["prompt"] == TOWER_STABILITY_PRE_PROMPT and texts == ("Yes", "No") and answers == (YES_ANSWER, NO_ANSWER)
    logp = judge.log_probabilities(obs)
    independent = np.array([[_independent_logprob(judge.agent, {**o, "prompt": TOWER_STABILITY_PRE_PROMPT},
                                                  a + "<|im_end|>") for a in ("Yes", "No")] for o in obs])
    np.testing.assert_allclose(logp, independent, atol=1e-4, rtol=0)
    # A prompt of the user's own is scored as given, with the tagged answers.
    custom = {**obs[0], "prompt": "Does it fall? Answer Yes or No."}
    assert judge.scoring_plan(custom)[1] == (YES_ANSWER, NO_ANSWER)


def test_judgements_compare_in_the_tasks_polarity(judge):
    from evaluation import compare_judgements

    cmp = compare_judgements(judge, "TowerStability-v0", n_episodes=3, seed=0, batch_size=3)
    falls = [o["info"]["falls"] for o in _observations("TowerStability-v0", range(3))]
    assert cmp.yes_correct.tolist() == falls  # Yes means falls
    assert cmp.logprob_accuracy == np.mean([(p >= 0.5) == f for p, f in zip(cmp.p_yes, falls)])


def test_evaluate_works_unchanged(judge):
    from evaluation import evaluate

    result = evaluate(judge, "TopBlockStability-v0", n_episodes=4, seed=0, batch_size=3)
    assert result.legal_rate == 1.0 and result.accuracy is not None
    assert [e.answer for e in result.episodes] == judge.act(_observations("TopBlockStability-v0", range(4)))


def test_split_adapter_syntax(tmp_path):
    assert split_adapter("tiny-base") == ("tiny-base", None)
    assert split_adapter("tiny-base+adapter=runs/a+b/step-1") == ("tiny-base", "runs/a+b/step-1")
    odd = tmp_path / "model+adapter=v2"  # an existing path is the model, whatever its name
    odd.mkdir()
    assert split_adapter(str(odd)) == (str(odd), None)
    for bad in ("+adapter=x", "tiny+adapter="):
        with pytest.raises(ValueError, match=r"MODEL\+adapter=PATH"):
            split_adapter(bad)
    assert ADAPTER_SEPARATOR == "+adapter="


def test_spec_errors_name_the_value_and_the_fix(tmp_path, adapter_dir):
    with pytest.raises(ValueError, match="does not exist.*PEFT adapter folder"):
        check_agent_spec(f"vlm:tiny+adapter={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="holds no adapter_config.json"):
        load_agent(f"vlm-logprob:tiny+adapter={tmp_path}")
    with pytest.raises(ValueError, match="needs an argument: vlm-logprob:MODEL"):
        load_agent("vlm-logprob:")
    with pytest.raises(ValueError, match="did you mean vlm-logprob"):
        load_agent("vlm-logprb:tiny")
    check_agent_spec(f"vlm:tiny{ADAPTER_SEPARATOR}{adapter_dir}")  # a good spec passes without loading


def test_specs_with_adapters_load_the_adapter(tiny_path, adapter_dir, stability_observations):
    obs = stability_observations[:3]
    sampling = SamplingParams(max_new_tokens=8)
    agent = load_agent(f"vlm:{tiny_path}+adapter={adapter_dir}", seed=2, device="cpu", sampling=sampling)
    assert isinstance(agent, VLMAgent) and agent.active_adapter == "default"
    direct = VLMAgent.from_pretrained(str(tiny_path), adapter=str(adapter_dir), seed=2, device="cpu",
                                      sampling=sampling)
    base = VLMAgent.from_pretrained(str(tiny_path), seed=2, device="cpu", sampling=sampling)
    assert agent.act(obs) == direct.act(obs)

    judge = load_agent(f"vlm-logprob:{tiny_path}+adapter={adapter_dir}", device="cpu")
    assert isinstance(judge, LogProbJudge) and judge.agent.active_adapter == "default"
    adapted = judge.log_probabilities(obs)
    np.testing.assert_array_equal(adapted, LogProbJudge(direct).log_probabilities(obs))
    assert np.abs(adapted - LogProbJudge(base).log_probabilities(obs)).max() > 1e-3  # the adapter is used
    independent = [_independent_logprob(judge.agent, obs[0], a + "<|im_end|>") for a in (YES_ANSWER, NO_ANSWER)]
    np.testing.assert_allclose(adapted[0], independent, atol=1e-4, rtol=0)
