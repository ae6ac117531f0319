"""Baseline agents answer every env; the oracle reaches the ceiling; constants and random sit below."""

import gymnasium as gym
import numpy as np
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


def _episode_obs(env_id, answers, seed=0, **kwargs):
    """The observation (with its latest info) after playing ``answers`` on ``env_id``."""
    import gymnasium as gym

    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    for answer in answers:
        obs, *_, info = env.step(answer)
    return {**obs, "info": info}


class _Counting:
    """Records what it is asked; answers with a counter, so repeated draws differ."""

    def __init__(self):
        self.asked, self.calls = [], 0

    def act(self, observations):
        self.calls += 1
        self.asked += list(observations)
        return [f"<answer>{len(self.asked) - len(observations) + i}</answer>" for i in range(len(observations))]


def test_repeat_agent_asks_the_first_turns_question_again():
    from agents.baselines import RepeatAgent

    first = _episode_obs("TopBlockXOnly-Retry-v0", [])
    later = _episode_obs("TopBlockXOnly-Retry-v0", ["<answer>300</answer>", "<answer>-300</answer>"])
    inner = _Counting()
    answers = RepeatAgent(inner).act([first, later])
    assert inner.calls == 1 and answers == ["<answer>0</answer>", "<answer>1</answer>"]
    asked = inner.asked[1]
    assert "history" not in asked and asked["prompt"] == later["history"][0]["prompt"]
    np.testing.assert_array_equal(asked["image"], later["history"][0]["image"])
    assert set(asked["info"]) == {"task", "answer_format"}  # nothing privileged, nothing of the feedback
    copied = RepeatAgent(inner, resample=False).act([later])
    assert copied == ["<answer>300</answer>"]


def test_repeat_agent_of_a_deterministic_agent_gives_the_same_answer_every_turn():
    from agents.baselines import RepeatAgent
    from agents.perceive import PerceiveSimulateAgent

    agent = RepeatAgent(PerceiveSimulateAgent())
    first = _episode_obs("SideBlockXOnly-Sequential-v0", [])
    answer = agent.act([first])[0]
    later = _episode_obs("SideBlockXOnly-Sequential-v0", ["<answer>120</answer>"])
    assert agent.act([later]) == [answer]
    with pytest.raises(TypeError, match="act"):
        RepeatAgent(object())


def test_random_agent_names_a_movable_colour_on_tower_build():
    from agents.baselines import RandomAgent
    from envs.answers import parse_answer

    obs = _episode_obs("TowerBuild-v0", [])
    answers = RandomAgent(seed=0).act([obs] * 40)
    assert {parse_answer(a, "colour_x").value[0] for a in answers} <= set(obs["info"]["movable_colours"])
    no_info = {k: v for k, v in obs.items() if k != "info"}  # from the prompt alone: still the build format
    assert parse_answer(RandomAgent(seed=0).act([no_info])[0], "colour_x").legal


def test_max_history_turns_reaches_vlm_agents_only(monkeypatch):
    import agents.vlm as vlm

    seen, stub = {}, ConstantAgent("<answer>0</answer>")
    monkeypatch.setattr(vlm.VLMAgent, "from_pretrained",
                        classmethod(lambda cls, name, **kw: seen.update(kw) or stub))
    assert load_agent("vlm:tiny-base", max_history_turns=1) is stub and seen["max_history_turns"] == 1
    assert load_agent("repeat:vlm:tiny-base", max_history_turns=2).agent is stub and seen["max_history_turns"] == 2
    assert isinstance(load_agent("random", max_history_turns=1), RandomAgent)  # others read no chat
