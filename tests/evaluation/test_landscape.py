"""Reward landscapes: values are TowerEnv.judge's rewards, and the peak is the oracle's answer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.answers import parse_answer
from evaluation.landscape import answer_text, plot_landscapes, reward_landscape


def _judge(env_id, seed, answers):
    env = gym.make(env_id)
    env.reset(seed=seed)
    rewards = [env.unwrapped.judge(a)[0] for a in answers]
    env.close()
    return rewards


def _optimal(env_id, seed):
    env = gym.make(env_id)
    _, info = env.reset(seed=seed)
    env.close()
    return parse_answer(info["optimal_action"], info["answer_format"]).value


@pytest.mark.parametrize("env_id", ["TopBlockXOnly-v0", "SideBlockXOnly-v0"])
def test_x_landscape_values_and_optimum(env_id):
    seed = 4
    land = reward_landscape(env_id, seed=seed, step=100)
    assert land.xs.tolist() == list(range(-600, 601, 100)) and land.ups is None
    assert land.rewards.shape == (13,) and land.rewards.dtype == np.float64
    rng = np.random.default_rng(0)
    picks = rng.choice(13, size=4, replace=False)
    assert land.rewards[picks].tolist() == _judge(env_id, seed, [answer_text(land.xs[i]) for i in picks])
    # With the oracle's answer on the grid, the landscape peaks there, at ~20 (a stable, centred tower).
    x_opt = _optimal(env_id, seed)
    fine = reward_landscape(env_id, seed=seed, xs=sorted({*range(-600, 601, 25), x_opt}))
    best, reward = fine.best()
    assert best == answer_text(x_opt) == fine.optimal_action and fine.optimal == (x_opt,)
    assert reward > 19.9 and fine.outcomes[list(fine.xs).index(x_opt)] == "stable"


def test_xy_landscape_values_and_optimum():
    seed = 2
    x_opt, up_opt = _optimal("SideBlockXY-v0", seed)
    xs = sorted({*range(-600, 601, 150), x_opt})
    ups = sorted({*range(0, 1001, 200), up_opt})
    land = reward_landscape("SideBlockXY-v0", seed=seed, xs=xs, ups=ups)
    assert land.rewards.shape == (len(ups), len(xs)) and land.outcomes.shape == land.rewards.shape
    cells = [(i, j) for i in range(len(ups)) for j in range(len(xs))][::7]
    expected = _judge("SideBlockXY-v0", seed, [answer_text(xs[j], ups[i]) for i, j in cells])
    assert [land.rewards[i, j] for i, j in cells] == expected
    assert land.best() == (answer_text(x_opt, up_opt), land.rewards[ups.index(up_opt), xs.index(x_opt)])
    assert land.best()[0] == land.optimal_action and land.best()[1] > 19.9
    # Below the tower's top and over it: inside the tower; far from it and low: resting on the floor.
    assert set(land.outcomes.ravel()) >= {"stable", "unstable", "inside_tower"}


def test_bad_input():
    with pytest.raises(ValueError, match="placement task"):
        reward_landscape("TopBlockStability-v0")
    with pytest.raises(ValueError, match="ups= applies to SideBlockXY-v0"):
        reward_landscape("TopBlockXOnly-v0", ups=[0, 100])
    with pytest.raises(ValueError, match="step must be a positive int"):
        reward_landscape("TopBlockXOnly-v0", step=0)
    with pytest.raises(gym.error.Error, match="Did you mean"):
        reward_landscape("TopBlockXonly-v0")
    with pytest.raises(ValueError, match="empty"):
        plot_landscapes([], "x.png")


def test_plot_and_cli(tmp_path, capsys):
    from cubeworld.cli import main

    out = tmp_path / "landscape.png"
    assert main(["landscape", "--seed", "1", "--step", "200", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "SideBlockXY-v0" in printed and "optimal answer" in printed
    assert main(["landscape", "--env", "TopBlockStability-v0", "--out", str(tmp_path / "b.png")]) == 2
