"""Sampled vs log-probability judgements on TopBlockStability-v0 with the tiny model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import envs  # noqa: E402,F401
from agents import LogProbJudge, VLMAgent  # noqa: E402
from agents.backends.base import SamplingParams  # noqa: E402
from evaluation import compare_judgements, evaluate  # noqa: E402


@pytest.fixture(scope="module")
def agent():
    return VLMAgent.from_pretrained("tiny", device="cpu", seed=1, sampling=SamplingParams(max_new_tokens=12))


def test_both_ways_equal_evaluate(agent):
    n, seed = 5, 7
    cmp = compare_judgements(agent, "TopBlockStability-v0", n_episodes=n, seed=seed, batch_size=2)
    sampled = evaluate(agent, "TopBlockStability-v0", n, seed, batch_size=2)
    logprob = evaluate(LogProbJudge(agent), "TopBlockStability-v0", n, seed, batch_size=2)
    assert cmp.sampled.episodes == sampled.episodes and cmp.sampled_accuracy == sampled.accuracy
    assert cmp.logprob.episodes == logprob.episodes and cmp.logprob_accuracy == logprob.accuracy
    env = gym.make("TopBlockStability-v0")
    observations = [{**o, "info": i} for o, i in (env.reset(seed=s) for s in range(seed, seed + n))]
    np.testing.assert_allclose(cmp.p_yes, LogProbJudge(agent).probabilities(observations), atol=1e-12)
    assert cmp.yes_correct.tolist() == [o["info"]["stable_initially"] for o in observations]
    # The log-prob answers are legal by construction; the majority baseline is from the scenes.
    assert cmp.logprob.legal_rate == 1.0
    assert cmp.majority_accuracy == max(cmp.yes_correct.mean(), 1 - cmp.yes_correct.mean())
    assert "accuracy, log-prob" in cmp.summary() and set(cmp.to_dict()) >= {"sampled_accuracy", "logprob_accuracy"}


def test_non_binary_env_is_refused_before_sampling(agent):
    with pytest.raises(ValueError, match="top_block_x_only"):
        compare_judgements(agent, "TopBlockXOnly-v0", n_episodes=2)
