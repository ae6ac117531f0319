"""The stable-baselines3 baseline: wrapper, action mapping, PPO training, the agent, save/load."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_checker import check_env  # noqa: E402

import envs  # noqa: E402
from agents.sb3 import (  # noqa: E402
    FIXED_UP,
    SB3Agent,
    TextActionWrapper,
    action_to_answer,
    episode_rewards,
    make_ppo,
    make_sb3_env,
    preprocess_image,
    train_ppo,
)
from envs.answers import parse_answer  # noqa: E402

TRAIN_STEPS = 256


@pytest.fixture(scope="module")
def trained():
    """PPO trained for 256 steps (2 updates) on 64 px TopBlockXOnly-v0: a few seconds."""
    return train_ppo("TopBlockXOnly-v0", TRAIN_STEPS, seed=0, image_size=64,
                     n_envs=4, n_steps=32, batch_size=64, n_epochs=2)


def _observations(env_id: str, seeds=(0, 1, 2)) -> list[dict]:
    env = gym.make(env_id)  # default 256 px: the agent must resize
    observations = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        observations.append({**obs, "info": info})
    env.close()
    return observations


# -- the wrapper -------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_wrapped_env_passes_sb3_check_env(env_id):
    env = make_sb3_env(env_id, image_size=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    sb3_warnings = [str(w.message) for w in caught if "stable_baselines3" in w.filename]
    assert sb3_warnings == []
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space.shape == ((2,) if env_id == "SideBlockXY-v0" else (1,))
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.close()


def test_wrapper_step_is_the_env_judging_the_written_answer():
    wrapped = make_sb3_env("TopBlockXOnly-v0", image_size=64)
    plain = gym.make("TopBlockXOnly-v0")
    obs, _ = wrapped.reset(seed=3)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    plain_obs, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(obs, preprocess_image(plain_obs["image"], 64))
    _, reward, terminated, truncated, info = wrapped.step(np.array([-0.05], np.float32))
    assert info["answer"] == "<answer>-30</answer>"
    _, plain_reward, *_ = plain.step("<answer>-30</answer>")
    assert (reward, terminated, truncated) == (plain_reward, True, False)


def test_wrapper_rejects_a_non_cubeworld_env():
    with pytest.raises(ValueError, match="not a cubeworld env"):
        TextActionWrapper(gym.make("CartPole-v1"))


# -- the action mapping ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("action", "answer_format", "expected"),
    [
        ([-1.0], "x", "<answer>-600</answer>"),
        ([0.0], "x", "<answer>0</answer>"),
        ([-0.0], "x", "<answer>0</answer>"),
        ([1.0], "x", "<answer>600</answer>"),
        ([0.5], "x", "<answer>300</answer>"),
        ([-0.0583], "x", "<answer>-35</answer>"),
        ([3.0], "x", "<answer>600</answer>"),  # clipped: PPO's Gaussian leaves the box
        ([-7.0], "x", "<answer>-600</answer>"),
        ([0.01], "binary", "<answer>Yes</answer>"),
        ([0.0], "binary", "<answer>No</answer>"),
        ([-1.0], "binary", "<answer>No</answer>"),
        ([0.0, -1.0], "xy", "<answer>0, 0</answer>"),
        ([0.0, 0.0], "xy", "<answer>0, 500</answer>"),
        ([-1.0, 1.0], "xy", "<answer>-600, 1000</answer>"),
        ([1.0, -0.4], "xy", "<answer>600, 300</answer>"),
        ([0.5, 5.0], "xy", "<answer>300, 1000</answer>"),
        ([0.5], "xy", f"<answer>300, {FIXED_UP}</answer>"),  # a 1-D policy on the xy task
        ([0.5, 1.0], "x", "<answer>300</answer>"),  # a 2-D policy on an x task: x only
        ([math.nan], "x", "<answer>nan</answer>"),
        ([0.2, math.inf], "xy", "<answer>nan</answer>"),
    ],
)
def test_action_to_answer(action, answer_format, expected):
    assert action_to_answer(np.asarray(action, np.float32), answer_format) == expected


@pytest.mark.parametrize("answer_format", ["binary", "x", "xy"])
def test_every_action_in_the_box_is_a_legal_answer(answer_format):
    rng = np.random.default_rng(0)
    for action in rng.uniform(-1, 1, size=(200, 2)):
        assert parse_answer(action_to_answer(action, answer_format), answer_format).legal


@pytest.mark.parametrize(
    ("action", "answer_format", "yes_means", "expected"),
    [
        ([0.5], "binary", "stable", "<answer>Yes</answer>"),
        ([-0.5], "binary", "stable", "<answer>No</answer>"),
        ([0.5], "binary", "falls", "<answer>No</answer>"),  # "Will the tower fall?": stable is No
        ([-0.5], "binary", "falls", "<answer>Yes</answer>"),
        ([0.0], "binary", "falls", "<answer>Yes</answer>"),  # 0 does not assert stable
        ([0.5], "true_false", "stable", "<answer>True</answer>"),
        ([-0.5], "true_false", "stable", "<answer>False</answer>"),
    ],
)
def test_a_positive_binary_action_asserts_stable_whatever_the_labels(action, answer_format, yes_means, expected):
    assert action_to_answer(np.asarray(action, np.float32), answer_format, yes_means=yes_means) == expected


@pytest.mark.parametrize("env_id", ["TopBlockStability-v0", "TowerStability-v0", "ShapeStacksStability-v0"])
def test_wrapper_judges_a_positive_action_as_the_claim_stable(env_id):
    wrapped = make_sb3_env(env_id, image_size=32)
    for seed in range(4):
        for sign in (1.0, -1.0):
            _, info = wrapped.reset(seed=seed)
            stable = info["stable_initially"] if "falls" not in info else not info["falls"]
            _, reward, *_ = wrapped.step(np.array([sign], np.float32))
            assert (reward > 0) == ((sign > 0) == stable), (env_id, seed, sign, info)
    wrapped.close()


class _ConstantPolicy:
    """A stand-in SB3 model whose every action is ``value``: what an agent writes is then its mapping alone."""

    observation_space = gym.spaces.Box(0, 255, (3, 32, 32), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, batch, deterministic=True):
        return np.full((len(batch), 1), self.value, np.float32), None


@pytest.mark.parametrize(("value", "top", "tower"), [(1.0, "Yes", "No"), (-1.0, "No", "Yes")])
def test_sb3_agent_answers_binary_tasks_by_meaning(value, top, tower):
    """One policy says "stable" to the photos' question and "will not fall" to the towers' question."""
    agent = SB3Agent(_ConstantPolicy(value))
    assert agent.act(_observations("TopBlockStability-v0", seeds=(0,))) == [f"<answer>{top}</answer>"]
    assert agent.act(_observations("TowerStability-v0", seeds=(0,))) == [f"<answer>{tower}</answer>"]
    bare = [{"image": o["image"], "prompt": o["prompt"]} for o in _observations("TowerStability-v0", seeds=(0,))]
    assert agent.act(bare) == [f"<answer>{tower}</answer>"]


def test_non_finite_action_is_judged_unparseable():
    assert parse_answer(action_to_answer([math.nan], "x"), "x").outcome == "unparseable"


@pytest.mark.parametrize(("action", "answer_format", "match"),
                         [([0.0], "yes/no", "answer_format"), ([], "x", "empty")])
def test_action_to_answer_rejects_programming_errors(action, answer_format, match):
    with pytest.raises(ValueError, match=match):
        action_to_answer(action, answer_format)


def test_preprocess_image_resizes_any_image_to_a_square_uint8():
    image = np.zeros((64, 64, 3), np.uint8)
    assert preprocess_image(image, 64) is image  # already the right size: no copy, no resampling
    photo = np.full((120, 90, 3), 200, np.uint8)
    out = preprocess_image(photo, 48)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8 and np.all(out == 200)


# -- PPO and the agent -------------------------------------------------------------------------

def test_make_ppo_rejects_bad_settings():
    with pytest.raises(ValueError, match="36"):
        make_ppo("TopBlockXOnly-v0", image_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        make_ppo("TopBlockXOnly-v0", n_envs=2, n_steps=8, batch_size=64)


def test_make_ppo_passes_env_kwargs_to_every_env():
    model = make_ppo("TopBlockStability-v0", n_envs=2, n_steps=8, batch_size=16,
                     env_kwargs={"style": "lerer", "randomise": True})
    stylers = [e.unwrapped.styler for e in model.get_env().envs]
    assert [(s.style, bool(s.amounts)) for s in stylers] == [("lerer", True)] * 2
    plain = make_ppo("TopBlockStability-v0", n_envs=1, n_steps=8, batch_size=8)
    assert plain.get_env().envs[0].unwrapped.styler.style == "plain"


def test_ppo_trains_and_logs_one_reward_per_step(trained):
    assert trained.num_timesteps == TRAIN_STEPS
    rewards = episode_rewards(trained)
    assert rewards.shape == (TRAIN_STEPS,)
    assert np.all((rewards >= -5) & (rewards <= 20))


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_sb3_agent_answers_every_env_legally(trained, env_id):
    observations = _observations(env_id)
    answers = SB3Agent(trained).act(observations)  # format from each observation
    assert len(answers) == len(observations)
    fmt = observations[0]["info"]["answer_format"]
    assert all(parse_answer(a, fmt).legal for a in answers), answers
    # Without the privileged info key the prompt names the format.
    bare = [{"image": o["image"], "prompt": o["prompt"]} for o in observations]
    assert SB3Agent(trained).act(bare) == answers


def test_sb3_agent_is_deterministic_and_batch_independent(trained):
    observations = _observations("TopBlockXOnly-v0", seeds=range(6))
    agent = SB3Agent(trained, "x")
    batch = agent.act(observations)
    assert agent.act(observations) == batch
    assert [agent.act([o])[0] for o in observations] == batch
    assert agent.act([]) == []


def test_sb3_agent_plugs_into_evaluate(trained):
    from evaluation import evaluate

    result = evaluate(SB3Agent(trained), "TopBlockXOnly-v0", n_episodes=4, seed=0, batch_size=2)
    assert result.n_episodes == 4 and result.legal_rate == 1.0


def test_save_load_round_trip_gives_identical_actions(trained, tmp_path):
    observations = _observations("SideBlockXOnly-v0", seeds=range(5))
    agent = SB3Agent(trained, "x")
    agent.save(str(tmp_path / "ppo"))
    loaded = SB3Agent.load(str(tmp_path / "ppo.zip"), "x")
    assert loaded.image_size == agent.image_size == 64
    assert loaded.act(observations) == agent.act(observations)
    batch = np.stack([preprocess_image(o["image"], 64) for o in observations])
    np.testing.assert_array_equal(loaded.model.predict(batch, deterministic=True)[0],
                                  trained.predict(batch, deterministic=True)[0])


def test_two_dimensional_policy_answers_xy_and_x():
    model = make_ppo("SideBlockXY-v0", seed=0, image_size=40, n_envs=1, n_steps=64, batch_size=64)
    observations = _observations("SideBlockXY-v0", seeds=(0, 1))
    xy = SB3Agent(model).act(observations)
    assert all(parse_answer(a, "xy").legal for a in xy)
    x_only = SB3Agent(model, "x").act(observations)
    assert [parse_answer(a, "x").value for a in x_only] == [parse_answer(a, "xy").value[0] for a in xy]


def test_sb3_agent_rejects_a_bad_answer_format(trained):
    with pytest.raises(ValueError, match="answer_format"):
        SB3Agent(trained, "yes/no")
