"""Multi-step episode metrics (evaluation.episodes): table-driven, on hand-computed values."""

import math

import numpy as np
import pytest

from evaluation.episodes import (
    auccess,
    auccess_weights,
    episode_metrics,
    episode_returns,
    improvement,
    mean_attempts_to_success,
    mean_return,
    reward_by_attempt,
    success_at_k,
)

S = True
F = False
SOLVED_AT_ONCE = [(20.0, S)]
SOLVED_SECOND = [(1.0, F), (19.5, S)]
SOLVED_THIRD = [(-1.0, F), (2.0, F), (19.0, S)]
NEVER = [(1.0, F), (2.0, F), (3.0, F)]
COLLAPSE = [(-1.0, F)]  # a build episode that ended early without success

L = math.log


@pytest.mark.parametrize("episodes,k,expected", [
    ([SOLVED_AT_ONCE], 3, [1.0, 1.0, 1.0]),
    ([NEVER], 3, [0.0, 0.0, 0.0]),
    ([COLLAPSE], 3, [0.0, 0.0, 0.0]),
    ([SOLVED_AT_ONCE, SOLVED_SECOND, SOLVED_THIRD, NEVER], 3, [0.25, 0.5, 0.75]),
    ([SOLVED_SECOND, COLLAPSE], 2, [0.0, 0.5]),
    ([SOLVED_AT_ONCE, COLLAPSE], 1, [0.5]),
    ([[(1.0, F), (20.0, S), (20.0, S)]], 3, [0.0, 1.0, 1.0]),  # counted once, at its first success
])
def test_success_at_k(episodes, k, expected):
    assert success_at_k(episodes, k) == pytest.approx(expected)


@pytest.mark.parametrize("rates,expected", [
    ([0.5], 0.5),                                   # K = 1: AUCCESS is s_1
    ([1.0, 1.0, 1.0], 1.0),
    ([0.0, 0.0, 0.0], 0.0),
    ([0.0, 0.0, 1.0], L(4 / 3) / L(4)),             # w_3 / (w_1 + w_2 + w_3) = 0.2075...
    ([0.0, 1.0], L(3 / 2) / L(3)),                  # 0.3691
    ([0.5, 1.0], (0.5 * L(2) + L(3 / 2)) / L(3)),   # 0.6845
    ([0.3, 0.5, 0.7], 0.4415037499278844),          # (0.3 log 2 + 0.5 log 1.5 + 0.7 log 4/3) / log 4
])
def test_auccess_on_hand_computed_values(rates, expected):
    assert auccess(rates) == pytest.approx(expected, abs=1e-12)


def test_auccess_weights_are_phyres():
    w = auccess_weights(100)  # PHYRE's K
    assert w[0] == pytest.approx(L(2)) and w[99] == pytest.approx(L(101) - L(100))
    assert w.sum() == pytest.approx(L(101)) and w.dtype == np.float64 and w.shape == (100,)
    assert np.all(np.diff(w) < 0)  # early success weighs more


@pytest.mark.parametrize("episodes,k,means,counts", [
    ([SOLVED_AT_ONCE], 3, [20.0, None, None], [1, 0, 0]),
    ([SOLVED_AT_ONCE, SOLVED_SECOND, SOLVED_THIRD, NEVER], 3,
     [(20 + 1 - 1 + 1) / 4, (19.5 + 2 + 2) / 3, (19 + 3) / 2], [4, 3, 2]),
    ([COLLAPSE, SOLVED_SECOND], 2, [0.0, 19.5], [2, 1]),
])
def test_reward_by_attempt(episodes, k, means, counts):
    got_means, got_counts = reward_by_attempt(episodes, k)
    assert got_counts == counts
    assert [m is None for m in got_means] == [m is None for m in means]
    assert [m for m in got_means if m is not None] == pytest.approx([m for m in means if m is not None])


@pytest.mark.parametrize("episodes,returns,gain,attempts", [
    ([SOLVED_AT_ONCE], [20.0], 0.0, 1.0),               # one turn: improvement 0 by definition
    ([SOLVED_SECOND], [20.5], 18.5, 2.0),
    ([NEVER], [6.0], 2.0, None),
    ([COLLAPSE, NEVER], [-1.0, 6.0], 1.0, None),
    ([SOLVED_AT_ONCE, SOLVED_SECOND, SOLVED_THIRD, NEVER], [20.0, 20.5, 20.0, 6.0],
     (0 + 18.5 + 20 + 2) / 4, (1 + 2 + 3) / 3),
    ([[(5.0, F), (-5.0, F)]], [0.0], -10.0, None),      # it can get worse
])
def test_returns_improvement_and_attempts_to_success(episodes, returns, gain, attempts):
    r = episode_returns(episodes)
    assert r.dtype == np.float64 and r.shape == (len(episodes),)
    assert r.tolist() == pytest.approx(returns)
    assert improvement(episodes) == pytest.approx(gain)
    got = mean_attempts_to_success(episodes)
    assert got is None if attempts is None else got == pytest.approx(attempts)


def test_mean_return_has_a_bootstrap_interval():
    episodes = [[(float(r), False)] for r in np.random.default_rng(0).normal(5.0, 1.0, 200)]
    mean, (low, high) = mean_return(episodes, seed=0)
    assert low < mean < high and mean == pytest.approx(episode_returns(episodes).mean())
    assert mean_return([SOLVED_AT_ONCE, SOLVED_AT_ONCE]) == (20.0, (20.0, 20.0))


def test_episode_metrics_bundles_them():
    episodes = [SOLVED_AT_ONCE, SOLVED_SECOND, SOLVED_THIRD, NEVER]
    m = episode_metrics(episodes, 3, seed=0)
    assert set(m) == {"success_at_k", "auccess", "reward_by_attempt", "episodes_by_attempt", "mean_return",
                      "return_ci95", "improvement", "mean_attempts_to_success"}
    assert m["success_at_k"] == pytest.approx([0.25, 0.5, 0.75])
    assert m["auccess"] == pytest.approx((0.25 * L(2) + 0.5 * L(1.5) + 0.75 * L(4 / 3)) / L(4))
    assert m["episodes_by_attempt"] == [4, 3, 2] and m["mean_return"] == pytest.approx(66.5 / 4)


@pytest.mark.parametrize("call,match", [
    (lambda: success_at_k([], 3), "episodes is empty"),
    (lambda: success_at_k([[]], 3), "episode 0 has no turns"),
    (lambda: success_at_k([NEVER], 2), "more than max_turns=2"),
    (lambda: success_at_k([NEVER], 0), "max_turns must be an int >= 1"),
    (lambda: reward_by_attempt([SOLVED_AT_ONCE, []], 3), "episode 1 has no turns"),
    (lambda: improvement([]), "episodes is empty"),
    (lambda: auccess([]), "non-empty"),
    (lambda: auccess([0.5, 1.5]), r"in \[0, 1\]"),
    (lambda: auccess_weights(0), "max_turns"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
