"""The environment contract: Gymnasium API, determinism, replay, rewards end to end."""

import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.answers import sample_legal_answer
from envs.prompts import REASONING, prompt_for
from envs.rewards import OUTCOMES
from envs.scenes import Cube, Scene

# check_env warnings we accept, with the reason. Empty: every id passes clean.
ALLOWED_WARNINGS: dict[str, str] = {}

INFO_KEYS = {"task", "answer_format", "scene", "offset", "n_blocks", "stable_initially", "optimal_action"}
STEP_KEYS = INFO_KEYS | {"parsed_action", "parse_error", "outcome", "distance", "stable_after", "sim_steps"}


@pytest.mark.parametrize("env_id", envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS)
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env(env_id, render_mode):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id, render_mode=render_mode).unwrapped)
    unexpected = [str(w.message) for w in caught if not any(k in str(w.message) for k in ALLOWED_WARNINGS)]
    assert not unexpected


def test_make_without_import_prefix_and_unknown_ids():
    env = gym.make("envs:TopBlockXOnly-v0")
    assert env.unwrapped.task == "top_block_x_only"
    with pytest.raises(gym.error.Error, match="TopBlockXOnly"):
        gym.make("TopBlockXonly-v0")


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_reset_step_contract(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (256, 256, 3) and obs["image"].dtype == np.uint8
    assert isinstance(obs["prompt"], str) and "<answer>" in obs["prompt"]
    assert INFO_KEYS <= set(info)
    obs2, reward, terminated, truncated, info2 = env.step(info["optimal_action"])
    assert terminated and not truncated and isinstance(reward, float)
    assert STEP_KEYS <= set(info2) and info2["outcome"] in OUTCOMES
    np.testing.assert_array_equal(obs2["image"], obs["image"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(info["optimal_action"])


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_same_seed_same_episode_different_seed_different_scene(env_id):
    a, b = gym.make(env_id), gym.make(env_id)
    obs_a, info_a = a.reset(seed=7)
    b.reset(seed=123)  # a different history must not matter
    obs_b, info_b = b.reset(seed=7)
    assert obs_a["image"].tobytes() == obs_b["image"].tobytes()
    assert info_a == info_b
    answer = sample_legal_answer(info_a["answer_format"], np.random.default_rng(0))
    assert a.step(answer)[1:] == b.step(answer)[1:]
    scenes = {str(gym.make(env_id).reset(seed=s)[1]["scene"]) for s in range(10)}
    assert len(scenes) == 10


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_replay_scene_reproduces_image_and_verdict(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=11)
    answer = sample_legal_answer(info["answer_format"], np.random.default_rng(1))
    result = env.step(answer)
    replay_env = gym.make(env_id)
    obs_r, info_r = replay_env.reset(seed=999, options={"scene": info["scene"]})
    assert obs_r["image"].tobytes() == obs["image"].tobytes()
    assert info_r == info
    assert replay_env.step(answer)[1:] == result[1:]


def test_replay_rejects_a_scene_of_the_other_family():
    _, info = gym.make("SideBlockXY-v0").reset(seed=0)
    with pytest.raises(ValueError, match="side_block"):
        gym.make("TopBlockXOnly-v0").reset(options={"scene": info["scene"]})


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_pickle_mid_episode(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.step(info["optimal_action"])[1:] == env.step(info["optimal_action"])[1:]


def _mean_rewards(env_id, answer_of, n=100):
    env = gym.make(env_id)
    rewards = []
    for seed in range(n):
        _, info = env.reset(seed=seed)
        rewards.append(env.step(answer_of(info))[1])
    return float(np.mean(rewards))


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_optimal_answer_reaches_the_ceiling_and_random_does_not(env_id):
    optimal = _mean_rewards(env_id, lambda info: info["optimal_action"])
    rng = np.random.default_rng(0)
    random = _mean_rewards(env_id, lambda info: sample_legal_answer(info["answer_format"], rng))
    if env_id == "TopBlockStability-v0":
        assert optimal == 1.0
        assert random < 0.7
    else:
        assert optimal >= 19.9
        assert random < 5.0


def _env_with(scene, task="side_block_xy", **kwargs):
    env = envs.TowerEnv(task, **kwargs)
    env.reset(options={"scene": scene.to_dict()})
    return env


TOWER2 = Scene("side_block", (Cube(0, 0, 0.5, 1, (30, 70, 220)), Cube(0, 0, 1.5, 1, (30, 180, 50)),
                              Cube(-2.0, 0, 0.5)), 2)

# (answer, outcome, distance in edges, reward); the red cube starts at x=-2, z=0.5; the goal is (0, 2.5).
XY_TABLE = [
    ("<answer>200, 200</answer>", "stable", 0.0, 20.0),
    ("<answer>230, 250</answer>", "stable", math.hypot(0.3, 0.5), 20 * math.exp(-0.34)),
    ("<answer>280, 200</answer>", "unstable", 0.8, 2 * math.exp(-0.64) - 2),  # COM beyond the edge
    ("<answer>0, 0</answer>", "unstable", math.hypot(2, 2), 2 * math.exp(-8) - 2),  # left on the floor
    ("<answer>200, 100</answer>", "inside_tower", 1.0, 2 * math.exp(-1) - 4),
    ("<answer>200, -1</answer>", "below_floor", None, -4.0),
    ("<answer>700, 200</answer>", "out_of_range", None, -5.0),
    ("<answer>left</answer>", "unparseable", None, -5.0),
]


@pytest.mark.parametrize("answer,outcome,distance,reward", XY_TABLE)
def test_xy_branches(answer, outcome, distance, reward):
    _, r, _, _, info = _env_with(TOWER2).step(answer)
    assert info["outcome"] == outcome
    assert r == pytest.approx(reward, abs=1e-9)
    if distance is None:
        assert info["distance"] is None
    else:
        assert info["distance"] == pytest.approx(distance, abs=1e-9)


X_TABLE = [  # side-block x-only: the red cube is set on the tower at its new x
    ("<answer>200</answer>", "stable", 0.0, 20.0),
    ("<answer>160</answer>", "stable", 0.4, 20 * math.exp(-0.16)),
    ("<answer>260</answer>", "unstable", 0.6, 2 * math.exp(-0.36) - 2),
    ("<answer>-200</answer>", "unstable", 4.0, 2 * math.exp(-16) - 2),  # misses the tower: falls
    ("<answer>601</answer>", "out_of_range", None, -5.0),
    ("<answer>2.0</answer>", "unparseable", None, -5.0),
]


@pytest.mark.parametrize("answer,outcome,distance,reward", X_TABLE)
def test_side_x_only_branches(answer, outcome, distance, reward):
    _, r, _, _, info = _env_with(TOWER2, "side_block_x_only").step(answer)
    assert (info["outcome"], r) == (outcome, pytest.approx(reward, abs=1e-9))


def test_top_block_x_only_and_binary_branches():
    leaning = Scene("top_block", (Cube(0, 0, 0.5, 1, (30, 70, 220)), Cube(0.7, 0, 1.5, 1, (30, 180, 50))), 1)
    cases = [("<answer>-70</answer>", "stable", 20.0), ("<answer>-40</answer>", "stable", 20 * math.exp(-0.09)),
             ("<answer>0</answer>", "unstable", 2 * math.exp(-0.49) - 2),
             ("<answer>-200</answer>", "unstable", 2 * math.exp(-1.69) - 2)]
    for answer, outcome, reward in cases:
        _, r, _, _, info = _env_with(leaning, "top_block_x_only").step(answer)
        assert (info["outcome"], r) == (outcome, pytest.approx(reward, abs=1e-9)), answer
    for answer, outcome, reward in [("<answer>No</answer>", "correct", 1.0),
                                    ("<answer>yes</answer>", "incorrect", 0.0),
                                    ("<answer>maybe</answer>", "unparseable", -1.0)]:
        _, r, _, _, info = _env_with(leaning, "top_block_stability").step(answer)
        assert (info["outcome"], r, info["stable_initially"]) == (outcome, reward, False)


def test_render_shows_the_result_after_a_step():
    env = gym.make("TopBlockXOnly-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=1)
    assert np.array_equal(env.render(), obs["image"])
    env.step("<answer>600</answer>")  # slides the top cube off: it falls to the floor
    after = env.render()
    assert after.shape == obs["image"].shape and not np.array_equal(after, obs["image"])
    assert np.array_equal(env.render(), after)


def test_kwargs_prompt_reasoning_image_size_n_blocks():
    env = gym.make("SideBlockXOnly-v0", prompt="Where? <answer></answer>", image_size=64, n_blocks=(3, 3))
    obs, info = env.reset(seed=0)
    assert obs["prompt"] == "Where? <answer></answer>" and obs["image"].shape == (64, 64, 3)
    assert info["n_blocks"] == 3
    assert REASONING in gym.make("TopBlockXOnly-v0", reasoning=True).reset(seed=0)[0]["prompt"]
    assert gym.make("SideBlockXY-v0", reasoning=True).reset(seed=0)[0]["prompt"] == prompt_for("side_block_xy", True)


@pytest.mark.parametrize("kwargs,match", [({"image_size": 8}, "image_size"), ({"n_blocks": (0, 9)}, "n_blocks"),
                                          ({"render_mode": "human"}, "render_mode")])
def test_bad_kwargs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.TowerEnv("top_block_x_only", **kwargs)


def test_judge_scores_a_group_without_ending_the_episode():
    env = gym.make("TopBlockXOnly-v0", render_mode="rgb_array").unwrapped
    obs, info = env.reset(seed=4)
    answers = ["<answer>0</answer>", info["optimal_action"], "nonsense", "<answer>600</answer>"]
    judged = [env.judge(a) for a in answers]
    for answer, (reward, judge_info) in zip(answers, judged):
        fresh = gym.make("TopBlockXOnly-v0")
        fresh.reset(seed=4)
        _, r, _, _, step_info = fresh.step(answer)
        assert (reward, judge_info) == (r, step_info)
    assert not np.array_equal(env.render(), obs["image"])  # shows the last judged answer's result
    env.step(info["optimal_action"])
    with pytest.raises(RuntimeError, match="reset"):
        env.judge(info["optimal_action"])
