"""evaluate(): ceilings, baselines, determinism, JSON round trip, bad input; multi-step episodes."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs
from agents import ConstantAgent, OracleAgent, RandomAgent
from evaluation import EvaluationResult, bootstrap_ci, evaluate
from evaluation.evaluate import MULTI_STEP_KEYS, TURN_KEYS


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


# --- multi-step episodes (DESIGN.md section 7), on a fake env that follows the contract ---

FAKE_ID = "FakeRetry-v0"
OLD_RESULT_KEYS = {"env_id", "n_episodes", "seed", "mean_reward", "ci95", "legal_rate", "legal_mean_reward",
                   "accuracy", "outcome_counts", "episodes", "agent", "decoding"}
OLD_EPISODE_KEYS = {"seed", "answer", "reward", "outcome", "parsed_action", "distance", "stable_initially",
                    "offset", "n_blocks"}


class FakeRetryEnv(gym.Env):
    """The retry contract in miniature: solved when the answer is the seed's target, K attempts.

    A failed attempt k earns reward k (so reward by attempt is checkable); an answer without
    ``<answer>`` is unparseable. ``never_ends``: an env bug, it neither terminates nor truncates.
    """

    def __init__(self, max_turns: int = 3, never_ends: bool = False):
        self.interaction, self.max_turns, self.answer_format = "retry", max_turns, "x"
        self.never_ends = never_ends
        self.observation_space = spaces.Dict(image=spaces.Box(0, 255, (4, 4, 3), np.uint8),
                                             prompt=spaces.Text(200))
        self.action_space = spaces.Text(200)

    def _obs(self, prompt):
        return {"image": np.full((4, 4, 3), self.attempt, np.uint8), "prompt": prompt,
                "history": tuple(self.history)}

    def _info(self, success):
        return {"attempt": self.attempt, "success": success, "optimal_action": f"<answer>{self.target}</answer>",
                "scene": {"seed": self.seed_}, "interaction": "retry", "max_turns": self.max_turns,
                "stable_initially": True, "offset": 0.25, "n_blocks": 2, "answer_format": "x"}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_, self.target, self.attempt, self.history = seed, 10 * seed, 0, []
        self.obs = self._obs("task prompt")
        return self.obs, self._info(False)

    def step(self, answer):
        self.attempt += 1
        success = answer == f"<answer>{self.target}</answer>"
        outcome = "stable" if success else "unstable" if answer.startswith("<answer>") else "unparseable"
        reward = 20.0 if success else float(self.attempt)
        self.history.append({"image": self.obs["image"], "prompt": self.obs["prompt"], "answer": answer})
        terminated = success and not self.never_ends
        truncated = not success and self.attempt >= self.max_turns and not self.never_ends
        self.obs = self._obs("it fell; try again")
        info = {**self._info(success), "outcome": outcome, "parsed_action": (self.attempt, 0),
                "parse_error": None, "distance": np.float64(0.5)}
        return self.obs, reward, terminated, truncated, info


if FAKE_ID not in gym.registry:
    gym.register(FAKE_ID, entry_point=FakeRetryEnv, disable_env_checker=True)


class SolvesOnAttempt:
    """Solves seed s at attempt s % 4 (0: never, answering unparseably); records every act call."""

    def __init__(self):
        self.calls = []

    def act(self, observations):
        self.calls.append([(o["info"]["scene"]["seed"], o["info"]["attempt"], len(o["history"]))
                           for o in observations])
        out = []
        for o in observations:
            seed, attempt = o["info"]["scene"]["seed"], o["info"]["attempt"] + 1
            need = seed % 4
            out.append("no idea" if need == 0 else o["info"]["optimal_action"] if attempt == need
                       else "<answer>999</answer>")
        return out


def test_multi_step_batches_the_running_episodes_of_each_turn():
    agent = SolvesOnAttempt()
    result = evaluate(agent, FAKE_ID, n_episodes=10, seed=0, batch_size=4)
    # chunks of seeds 0-3, 4-7, 8-9; an episode leaves the batch once it ends
    assert [len(c) for c in agent.calls] == [4, 3, 2, 4, 3, 2, 2, 1, 1]
    assert [s for s, _, _ in agent.calls[1]] == [0, 2, 3] and [s for s, _, _ in agent.calls[2]] == [0, 3]
    # every observation carries the episode's latest info: attempt k - 1 and k - 1 history turns at turn k
    for call in agent.calls:
        assert len({a for _, a, _ in call}) == 1 and all(a == h for _, a, h in call)
    assert [e.n_turns for e in result.episodes] == [3, 1, 2, 3, 3, 1, 2, 3, 3, 1]
    assert [e.seed for e in result.episodes] == list(range(10))


def test_multi_step_metrics_on_the_fake_env():
    result = evaluate(SolvesOnAttempt(), FAKE_ID, n_episodes=10, seed=0, batch_size=4)
    # needs per seed 0..9: 0 1 2 3 0 1 2 3 0 1 (0 = never); failed attempt k earns k, success 20
    assert result.interaction == "retry" and result.max_turns == 3 and result.accuracy is None
    assert result.success_at_k == pytest.approx([0.3, 0.5, 0.7])
    assert result.auccess == pytest.approx((0.3 * math.log(2) + 0.5 * math.log(1.5) + 0.7 * math.log(4 / 3))
                                           / math.log(4))
    returns = [6, 20, 21, 23, 6, 20, 21, 23, 6, 20]
    assert [e.reward for e in result.episodes] == returns
    assert result.mean_reward == result.mean_return == pytest.approx(16.6)
    assert result.ci95[0] < 16.6 < result.ci95[1]
    assert result.reward_by_attempt == pytest.approx([6.7, 50 / 7, 9.8]) and result.episodes_by_attempt == [10, 7, 5]
    assert result.improvement == pytest.approx(8.2)
    assert result.mean_attempts_to_success == pytest.approx(13 / 7)
    # legal rate and outcomes count turns: 22 turns, the 9 of the never-solved episodes unparseable
    assert result.outcome_counts == {"unparseable": 9, "stable": 7, "unstable": 6}
    assert result.legal_rate == pytest.approx(13 / 22)
    last = result.episodes[3]
    assert last.success and [t["outcome"] for t in last.turns] == ["unstable", "unstable", "stable"]
    assert set(last.turns[0]) == set(TURN_KEYS) and last.turns[0]["parsed_action"] == [1, 0]
    assert last.answer == "<answer>30</answer>" and last.outcome == "stable" and last.offset == 0.25
    assert not result.episodes[0].success
    text = result.summary()
    for fragment in ("mean return", "success within k", "k=1 0.300", "AUCCESS", "reward by attempt",
                     "1: 6.700 (n=10)", "improvement", "+8.200", "retry, at most 3 turns"):
        assert fragment in text, fragment


def test_multi_step_json_round_trip(tmp_path):
    result = evaluate(SolvesOnAttempt(), FAKE_ID, n_episodes=6, seed=3, batch_size=4)
    path = tmp_path / "multi.json"
    result.save(path)
    data = json.loads(path.read_text())
    assert set(MULTI_STEP_KEYS) <= set(data) and data["interaction"] == "retry"
    assert {"turns", "success", "n_turns"} <= set(data["episodes"][0])
    assert EvaluationResult.load(path) == result


def test_an_env_that_never_ends_its_episode_is_an_error():
    with pytest.raises(RuntimeError, match="still running after max_turns=2"):
        evaluate(SolvesOnAttempt(), FAKE_ID, n_episodes=2, batch_size=2,
                 env_kwargs={"max_turns": 2, "never_ends": True})


def test_single_step_json_keeps_its_keys_and_old_files_load(tmp_path):
    result = evaluate(RandomAgent(seed=0), "TopBlockXOnly-v0", n_episodes=3, seed=0)
    data = result.to_dict()
    assert set(data) == OLD_RESULT_KEYS and all(set(e) == OLD_EPISODE_KEYS for e in data["episodes"])
    assert "success within k" not in result.summary() and "mean reward  " in result.summary()
    old = {"env_id": "TopBlockXOnly-v0", "n_episodes": 1, "seed": 0, "mean_reward": 9.5, "ci95": [9.5, 9.5],
           "legal_rate": 1.0, "legal_mean_reward": 9.5, "accuracy": None, "outcome_counts": {"stable": 1},
           "episodes": [{"seed": 0, "answer": "<answer>0</answer>", "reward": 9.5, "outcome": "stable",
                         "parsed_action": 0, "distance": 0.5, "stable_initially": True, "offset": 0.5,
                         "n_blocks": 2}],
           "agent": "ConstantAgent", "decoding": None}
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = EvaluationResult.load(tmp_path / "old.json")
    assert loaded.interaction is None and loaded.success_at_k is None and loaded.episodes[0].turns is None
    assert loaded.ci95 == (9.5, 9.5) and loaded.to_dict() == {**old, "ci95": (9.5, 9.5)}


def test_oracle_solves_a_retry_episode_at_once():
    result = evaluate(OracleAgent(), "TopBlockXOnly-Retry-v0", 10)
    assert result.success_at_k[0] == 1.0 and result.auccess == 1.0
    assert result.mean_attempts_to_success == 1.0 and result.episodes_by_attempt[1:] == [0] * (result.max_turns - 1)
