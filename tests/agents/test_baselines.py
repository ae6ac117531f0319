"""Baseline agents answer every env; the oracle reaches the ceiling; constants and random sit below."""

import gymnasium as gym
import pytest

import envs
from agents import ConstantAgent, OracleAgent, RandomAgent, load_agent
from envs.answers import parse_answer


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_random_agent_answers_legally_with_and_without_info(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    fmt = info["answer_format"]
    with_info = RandomAgent(seed=1).act([{**obs, "info": info}] * 20)
    without = RandomAgent(seed=1).act([obs] * 20)  # the format read from the prompt
    assert with_info == without
    assert all(parse_answer(a, fmt).legal for a in with_info)
    assert len(set(with_info)) > 1


def test_random_agent_is_seeded():
    obs, info = gym.make("SideBlockXY-v0").reset(seed=0)
    assert RandomAgent(seed=3).act([obs] * 5) == RandomAgent(seed=3).act([obs] * 5)
    assert RandomAgent(seed=3).act([obs] * 5) != RandomAgent(seed=4).act([obs] * 5)


def test_oracle_needs_the_info_key():
    obs, info = gym.make("TopBlockXOnly-v0").reset(seed=0)
    assert OracleAgent().act([{**obs, "info": info}]) == [info["optimal_action"]]
    with pytest.raises(KeyError, match="optimal_action"):
        OracleAgent().act([obs])


def test_constant_agent():
    assert ConstantAgent("<answer>0</answer>").act([{}, {}]) == ["<answer>0</answer>"] * 2
    with pytest.raises(TypeError, match="str"):
        ConstantAgent(0)


def test_load_agent_specs():
    assert isinstance(load_agent("random"), RandomAgent)
    assert load_agent("constant:<answer>Yes</answer>").answer == "<answer>Yes</answer>"
    with pytest.raises(ValueError, match="did you mean oracle"):
        load_agent("orcale")
    with pytest.raises(ValueError, match="needs an argument"):
        load_agent("vlm")
