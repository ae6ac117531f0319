"""Every reward branch with exact values (envs.rewards)."""

import math

import pytest

from envs.rewards import OUTCOMES, binary_reward, placement_reward

E1 = math.exp(-1.0)
E025 = math.exp(-0.25)

PLACEMENT = [
    ("stable", 0.0, 20.0),
    ("stable", 1.0, 20.0 * E1),
    ("stable", 0.5, 20.0 * E025),
    ("unstable", 0.0, 0.0),
    ("unstable", 1.0, 2.0 * E1 - 2.0),
    ("inside_tower", 0.0, -2.0),
    ("inside_tower", 1.0, 2.0 * E1 - 4.0),
    ("unparseable", None, -5.0),
    ("out_of_range", None, -5.0),
    ("below_floor", None, -4.0),
]


@pytest.mark.parametrize("outcome,distance,expected", PLACEMENT)
def test_placement_reward(outcome, distance, expected):
    assert placement_reward(outcome, distance) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("outcome,expected", [("correct", 1.0), ("incorrect", 0.0), ("unparseable", -1.0)])
def test_binary_reward(outcome, expected):
    assert binary_reward(outcome) == expected


def test_far_misses_approach_the_floor_of_each_branch():
    assert placement_reward("stable", 50.0) == 0.0
    assert placement_reward("unstable", 50.0) == -2.0
    assert placement_reward("inside_tower", 50.0) == -4.0


@pytest.mark.parametrize("bad", [None, -0.1, math.nan, math.inf])
def test_distance_is_required_and_valid(bad):
    with pytest.raises(ValueError, match="distance"):
        placement_reward("stable", bad)


def test_unknown_outcomes_raise():
    with pytest.raises(ValueError, match="outcome"):
        placement_reward("toppled", 0.0)
    with pytest.raises(ValueError, match="outcome"):
        binary_reward("stable")


def test_outcome_names_are_the_contract():
    assert set(OUTCOMES) == {"stable", "unstable", "unparseable", "out_of_range", "below_floor",
                             "inside_tower", "correct", "incorrect"}
