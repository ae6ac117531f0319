"""VoteAgent: majority by label, ties to the chair, medians for numbers, the spec, and evaluate."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs  # noqa: F401
from agents import ConstantAgent, OracleAgent, VoteAgent, load_agent


def _obs(env_id: str, seed: int = 0) -> dict:
    env = gym.make(env_id)
    obs, info = env.reset(seed=seed)
    env.close()
    return {**obs, "info": info}


def _c(text: str) -> ConstantAgent:
    return ConstantAgent(f"<answer>{text}</answer>")


@pytest.mark.parametrize(
    ("env_id", "members", "expected"),
    [
        ("TopBlockStability-v0", ["Yes", "No", "No"], "No"),  # majority
        ("TopBlockStability-v0", ["Yes", "No"], "Yes"),  # tie: the chair
        ("TopBlockStability-v0", ["No", "Yes", "Yes", "No"], "No"),  # tie: the chair
        ("TopBlockStability-v0", ["maybe", "No", "Yes"], "No"),  # tie among legal: the first legal voter
        ("TopBlockStability-v0", ["yes", "YES", "No"], "Yes"),  # labels as parse_answer reads them
        ("TopBlockStability-v0", ["maybe", "perhaps"], "maybe"),  # none legal: the chair's text
        ("ShapeStacksStability-v0", ["False", "True", "False"], "False"),
        ("TopBlockXOnly-v0", ["100", "-40", "35"], "35"),  # the median
        ("TopBlockXOnly-v0", ["100", "-40"], "30"),  # an even count: the mean of the middle two
        ("TopBlockXOnly-v0", ["100", "700", "-40"], "30"),  # 700 is illegal: not a vote
        ("SideBlockXY-v0", ["100, 200", "-40, 900", "35, 0"], "35, 200"),  # per coordinate
        ("TowerBuild-v0", ["red, 0", "blue, 100"], "red, 0"),  # no vote over colours: the chair
    ],
)
def test_vote_table(env_id, members, expected):
    assert VoteAgent([_c(m) for m in members]).act([_obs(env_id)]) == [f"<answer>{expected}</answer>"]


def test_every_member_acts_once_per_batch_and_answers_stay_in_order():
    class Recording:
        def __init__(self):
            self.calls = []

        def act(self, observations):
            self.calls.append(len(observations))
            return OracleAgent().act(observations)

    a, b = Recording(), Recording()
    observations = [_obs("TopBlockStability-v0", s) for s in range(6)]
    assert VoteAgent([a, b, _c("Yes")]).act(observations) == OracleAgent().act(observations)
    assert a.calls == b.calls == [6]
    assert VoteAgent([a, b]).act([]) == []


def test_bad_members_are_named():
    with pytest.raises(ValueError, match="at least two"):
        VoteAgent([_c("Yes")])
    with pytest.raises(TypeError, match="act"):
        VoteAgent([_c("Yes"), object()])
    with pytest.raises(ValueError, match="1 names for 2"):
        VoteAgent([_c("Yes"), _c("No")], names=["a"])


def test_vote_spec_loads_every_member_and_checks_its_syntax():
    agent = load_agent("vote:oracle|constant:<answer>No</answer>|random")
    assert isinstance(agent, VoteAgent) and agent.member_names == [
        "oracle", "constant:<answer>No</answer>", "random"]
    with pytest.raises(ValueError, match="two or more specs"):
        load_agent("vote:oracle")
    with pytest.raises(ValueError, match="did you mean oracle"):
        load_agent("vote:oracle|orcale")


def test_a_vote_plugs_into_evaluate():
    from evaluation import evaluate

    result = evaluate(load_agent("vote:oracle|oracle|constant:<answer>No</answer>"), "TopBlockStability-v0",
                      n_episodes=8, seed=0)
    assert result.mean_reward == 1.0 and result.legal_rate == 1.0
