"""evaluate(): ceilings, baselines, determinism, JSON round trip, bad input."""

import math

import numpy as np
import pytest

import envs
from agents import ConstantAgent, OracleAgent, RandomAgent
from evaluation import EvaluationResult, bootstrap_ci, evaluate


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_oracle_reaches_the_ceiling(env_id):
    result = evaluate(OracleAgent(), env_id, n_episodes=100, seed=0, batch_size=32)
    assert result.legal_rate == 1.0
    if env_id == "TopBlockStability-v0":
        assert result.accuracy == 1.0 and result.mean_reward == 1.0
    else:
        assert result.mean_reward >= 19.9 and result.accuracy is None


def test_random_and_constant_baselines_sit_below_the_ceiling():
    random = evaluate(RandomAgent(seed=0), "TopBlockXOnly-v0", n_episodes=200, seed=0)
    constant = evaluate(ConstantAgent("<answer>0</answer>"), "TopBlockXOnly-v0", n_episodes=200, seed=0)
    assert random.mean_reward < 3.0
    assert 6.0 < constant.mean_reward < 11.0  # the image-blind shortcut: about 9 of 20
    assert random.ci95[1] < constant.ci95[0]
    assert constant.outcome_counts.keys() == {"stable", "unstable"}


def test_deterministic_agents_give_identical_results():
    a = evaluate(RandomAgent(seed=5), "SideBlockXY-v0", n_episodes=40, seed=10, batch_size=7)
    b = evaluate(RandomAgent(seed=5), "SideBlockXY-v0", n_episodes=40, seed=10, batch_size=7)
    assert a.to_dict() == b.to_dict()
    assert [e.seed for e in a.episodes] == list(range(10, 50))


def test_illegal_answers_count_against_the_legal_rate():
    class Mixed:
        def act(self, observations):
            return ["<answer>0</answer>" if i % 2 else "I don't know" for i in range(len(observations))]

    result = evaluate(Mixed(), "TopBlockXOnly-v0", n_episodes=20, seed=0, batch_size=8)
    assert result.legal_rate == 0.5
    assert result.outcome_counts["unparseable"] == 10
    legal = [e.reward for e in result.episodes if e.outcome != "unparseable"]
    assert result.legal_mean_reward == pytest.approx(np.mean(legal))


def test_json_round_trip(tmp_path):
    result = evaluate(RandomAgent(seed=0), "SideBlockXY-v0", n_episodes=10, seed=0)
    path = tmp_path / "r" / "result.json"
    result.save(path)
    assert EvaluationResult.load(path) == result


def test_bad_input():
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(OracleAgent(), "TopBlockXOnly-v0", n_episodes=0)

    class Short:
        def act(self, observations):
            return []

    with pytest.raises(ValueError, match="one per observation"):
        evaluate(Short(), "TopBlockXOnly-v0", n_episodes=2)


def test_bootstrap_interval():
    values = np.random.default_rng(0).normal(5.0, 1.0, 400)
    low, high = bootstrap_ci(values, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.2)
    assert bootstrap_ci(np.ones(5)) == (1.0, 1.0)
