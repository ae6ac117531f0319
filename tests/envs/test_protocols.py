"""Multi-step episode protocols (DESIGN.md section 7): the Gymnasium contract and the protocol contracts.

``check_env`` of every multi-step id runs with the single-step ids' in ``test_tower_env.py``."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.prompts import NEXT_TURN, feedback_sentence
from envs.rewards import OUTCOMES
from envs.scenes import Scene

RETRY = ("TopBlockXOnly-Retry-v0", "SideBlockXOnly-Retry-v0", "SideBlockXY-Retry-v0")
SEQUENTIAL = ("SideBlockXOnly-Sequential-v0", "SideBlockXY-Sequential-v0")
SINGLE_OF = {"TopBlockXOnly-Retry-v0": "TopBlockXOnly-v0", "SideBlockXOnly-Retry-v0": "SideBlockXOnly-v0",
             "SideBlockXY-Retry-v0": "SideBlockXY-v0", "SideBlockXOnly-Sequential-v0": "SideBlockXOnly-v0",
             "SideBlockXY-Sequential-v0": "SideBlockXY-v0"}
# Answers that miss (x-only: 1.2 edges off; x-y: on the floor), then legal ones; per format.
MISSES = {"x": ["<answer>120</answer>", "<answer>-450</answer>", "<answer>35</answer>"],
          "xy": ["<answer>120, 0</answer>", "<answer>0, 100</answer>", "<answer>-50, 400</answer>"],
          "colour_x": ["<answer>grey, 0</answer>", "<answer>red, 700</answer>", "<answer>blue, 0</answer>"]}


def _fmt(env):
    return env.unwrapped.answer_format


def _play(env, answers, seed=0, options=None):
    """Play ``answers`` (fewer turns if the episode ends); returns [(obs, reward, term, trunc, info)]."""
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs, 0.0, False, False, info)]
    for answer in answers:
        obs, reward, term, trunc, info = env.step(answer)
        out.append((obs, reward, term, trunc, info))
        if term or trunc:
            break
    return out


def test_registered_ids_and_kwargs_on_old_ids():
    assert set(envs.MULTI_STEP_ENV_IDS).isdisjoint(envs.ENV_IDS)
    env = gym.make("TopBlockXOnly-v0", interaction="retry", max_attempts=3, feedback="outcome")
    assert (env.unwrapped.interaction, env.unwrapped.max_turns) == ("retry", 3)
    assert gym.make("SideBlockXY-v0", interaction="sequential", max_moves=5).unwrapped.max_turns == 5
    assert gym.make("TowerBuild-v0").unwrapped.interaction == "build"
    for env_id in envs.ENV_IDS:  # single-step observations are exactly as they were
        obs, _ = gym.make(env_id).reset(seed=0)
        assert set(obs) == {"image", "prompt"}


@pytest.mark.parametrize("kwargs, match", [
    ({"interaction": "retry"}, "does not apply to task 'top_block_stability'"),
    ({"interaction": "replay"}, "interaction must be one of"),
    ({"feedback": "loud"}, "feedback must be one of"),
])
def test_bad_protocol_kwargs_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("TopBlockStability-v0", **kwargs)


@pytest.mark.parametrize("env_id, kwargs, match", [
    ("TopBlockXOnly-v0", {"interaction": "sequential"}, "does not apply"),
    ("TopBlockXOnly-v0", {"interaction": "retry", "max_moves": 2}, "max_moves applies to"),
    ("TopBlockXOnly-v0", {"interaction": "retry", "max_attempts": 0}, "max_attempts must be an int >= 1"),
    ("SideBlockXY-v0", {"interaction": "retry", "success_distance": -1}, "success_distance"),
    ("TowerBuild-v0", {"interaction": "retry"}, "does not apply"),
    ("SideBlockXY-v0", {"sizes": (0.8, 1.0)}, "sizes=.* does not apply to task .side_block_xy."),
    ("TowerBuild-v0", {"sizes": (0.2, 1.0)}, "sizes must satisfy"),
])
def test_bad_protocol_kwargs_on_ids(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", envs.MULTI_STEP_ENV_IDS)
def test_observation_history_and_info_keys(env_id):
    env = gym.make(env_id)
    answers = (MISSES[_fmt(env)] * 3)[:env.unwrapped.max_turns]
    steps = _play(env, answers)
    obs0, info0 = steps[0][0], steps[0][4]
    assert obs0["history"] == () and info0["attempt"] == 0 and info0["success"] is False
    assert info0["scene_now"] == info0["scene"] and info0["max_turns"] == env.unwrapped.max_turns
    for turn, (obs, reward, _term, _trunc, info) in enumerate(steps[1:], start=1):
        assert env.observation_space.contains(obs)
        assert len(obs["history"]) == turn and info["attempt"] == turn
        previous = steps[turn - 1][0]
        last = obs["history"][-1]
        assert last["answer"] == answers[turn - 1] and last["prompt"] == previous["prompt"]
        np.testing.assert_array_equal(last["image"], previous["image"])
        assert info["outcome"] in OUTCOMES and isinstance(reward, float)
        assert info["scene"] == info0["scene"]  # the initial scene, for replay
    assert steps[-1][3] or steps[-1][2]  # the episode ended within the turn limit
    with pytest.raises(RuntimeError, match="reset"):
        env.step("<answer>0</answer>")


@pytest.mark.parametrize("env_id", envs.MULTI_STEP_ENV_IDS)
def test_bitwise_deterministic_replayable_and_picklable(env_id):
    a, b = gym.make(env_id), gym.make(env_id)
    answers = MISSES[_fmt(a)]
    run_a, run_b = _play(a, answers, seed=3), _play(b, answers, seed=3)
    replay = _play(gym.make(env_id), answers, options={"scene": run_a[0][4]["scene"]})
    for other in (run_b, replay):
        assert len(other) == len(run_a)
        for (oa, ra, *_, ia), (ob, rb, *_, ib) in zip(run_a, other):
            assert ra == rb and ia == ib  # every info value, floats bitwise
            np.testing.assert_array_equal(oa["image"], ob["image"])
            assert oa["prompt"] == ob["prompt"]
    # Pickled mid-episode, both copies go on identically.
    env = gym.make(env_id)
    env.reset(seed=3)
    env.step(answers[0])
    clone = pickle.loads(pickle.dumps(env))
    got = [e.step(answers[1])[:2] for e in (env, clone)]
    assert got[0][1] == got[1][1] and got[0][0]["prompt"] == got[1][0]["prompt"]


@pytest.mark.parametrize("env_id", RETRY)
def test_retry_attempts_earn_the_single_step_reward_and_end_on_success(env_id):
    env = gym.make(env_id)
    single = gym.make(SINGLE_OF[env_id])
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        answers = MISSES[_fmt(env)][:2] + [info["optimal_action"]]
        for k, answer in enumerate(answers, start=1):
            single.reset(seed=seed)
            _, expected, *_ , single_info = single.step(answer)
            obs, reward, term, trunc, info = env.step(answer)
            assert reward == expected and info["outcome"] == single_info["outcome"]
            assert info["scene_now"] == info["scene"]  # every attempt acts on the initial scene
            assert info["success"] == (k == 3) and term == (k == 3) and not trunc
        assert obs["prompt"].endswith(NEXT_TURN["retry"])


def test_retry_truncates_after_max_attempts_and_ends_on_first_success():
    env = gym.make("TopBlockXOnly-Retry-v0", max_attempts=2)
    steps = _play(env, ["<answer>600</answer>"] * 5)
    assert len(steps) == 3 and steps[-1][3] and not steps[-1][2]
    env.reset(seed=0)
    _, info = env.reset(seed=0)
    _, _, term, _, info = env.step(info["optimal_action"])
    assert term and info["success"] and info["attempt"] == 1


@pytest.mark.parametrize("env_id", SEQUENTIAL)
def test_sequential_moves_start_from_scene_now_of_the_last(env_id):
    env, single = gym.make(env_id), gym.make(SINGLE_OF[env_id])
    answers = MISSES[_fmt(env)]
    for seed in range(3):
        _, info = env.reset(seed=seed)
        for answer in answers:
            state = info["scene_now"]
            single.reset(options={"scene": state})
            _, expected, *_, single_info = single.step(answer)
            _, reward, term, trunc, info = env.step(answer)
            assert reward == expected and info["outcome"] == single_info["outcome"]
            if term or trunc:
                break


def test_sequential_state_moves_and_the_oracle_finishes_from_it():
    env = gym.make("SideBlockXOnly-Sequential-v0")
    _, info = env.reset(seed=0)
    start = Scene.from_dict(info["scene"])
    _, reward, *_, info = env.step("<answer>120</answer>")  # stands, off-centre: not a success
    now = Scene.from_dict(info["scene_now"])
    assert info["outcome"] == "stable" and not info["success"]
    assert abs(now.cubes[now.target].z - start.goal_z) < 0.05  # the red cube is on the tower now
    _, reward, term, _, info = env.step(info["optimal_action"])
    assert term and info["success"] and reward > 19.9


def _shifted(answer, dx):
    numbers = answer.removeprefix("<answer>").removesuffix("</answer>").split(", ")
    return "<answer>" + ", ".join([str(int(numbers[0]) + dx), *numbers[1:]]) + "</answer>"


@pytest.mark.parametrize("env_id", RETRY + SEQUENTIAL)
def test_feedback_modes(env_id):
    images = {}
    for feedback in ("outcome", "image", "none"):
        env = gym.make(env_id, feedback=feedback)
        obs0, info0 = env.reset(seed=1)
        miss = _shifted(info0["optimal_action"], 120)  # onto the tower, 1.2 edges off: it falls
        obs, reward, *_ , info = env.step(miss)
        instruction = NEXT_TURN["retry" if env_id in RETRY else "sequential"]
        sentence = feedback_sentence(info["outcome"], reward, simulated=info["stable_after"] is not None)
        expected = {"outcome": f"{sentence} {instruction}", "image": instruction, "none": instruction}[feedback]
        assert obs["prompt"] == expected and info["outcome"] == "unstable"
        images[feedback] = obs["image"]
        if feedback == "none":
            np.testing.assert_array_equal(obs["image"], obs0["image"])
    np.testing.assert_array_equal(images["outcome"], images["image"])
    assert not np.array_equal(images["outcome"], images["none"])  # the result differs from the scene


@pytest.mark.parametrize("outcome, reward, simulated, text", [
    ("stable", 17.041, True, "The tower stood, and the reward was 17.04."),
    ("unstable", -1.5, True, "The tower did not stand: a block fell, and the reward was -1.50."),
    ("unstable", -1.5, False, "The block came to rest lower than the top of the tower, so the tower is no "
                              "taller, and the reward was -1.50."),
    ("inside_tower", -3.0, False, "The block would have been inside the tower, so nothing was moved, and the "
                                  "reward was -3.00."),
    ("unparseable", -5.0, True, "The answer could not be read, so nothing was moved, and the reward was -5.00."),
    ("out_of_range", -5.0, True, "The answer was out of range, so nothing was moved, and the reward was -5.00."),
    ("below_floor", -4.0, True, "The block would have been below the floor, so nothing was moved, and the "
                                "reward was -4.00."),
    ("unknown_colour", -5.0, True, "No block of that colour could be lifted from the floor, so nothing was "
                                   "moved, and the reward was -5.00."),
])
def test_feedback_sentences(outcome, reward, simulated, text):
    assert feedback_sentence(outcome, reward, simulated) == text


def test_feedback_sentence_for_binary_outcomes_is_an_error():
    with pytest.raises(KeyError, match="no feedback sentence"):
        feedback_sentence("correct", 1.0)
