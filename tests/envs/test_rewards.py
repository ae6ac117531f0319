"""Every reward branch with exact values (envs.rewards)."""

import math

import pytest

from envs.answers import parse_answer
from envs.rewards import (
    ILLEGAL_OUTCOMES,
    ILLEGAL_REWARD,
    LEGAL_OUTCOMES,
    OUTCOMES,
    binary_outcome,
    binary_reward,
    binary_truth,
    build_reward,
    placement_reward,
)

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
                             "inside_tower", "correct", "incorrect", "unknown_colour"}


def test_illegal_outcomes_are_the_parsers_and_the_rest_are_legal():
    assert ILLEGAL_OUTCOMES == ("unparseable", "out_of_range", "below_floor", "unknown_colour")
    assert set(ILLEGAL_OUTCOMES) == set(ILLEGAL_REWARD)
    assert set(ILLEGAL_OUTCOMES) | set(LEGAL_OUTCOMES) == set(OUTCOMES)
    assert not set(ILLEGAL_OUTCOMES) & set(LEGAL_OUTCOMES)
    # every outcome the parser gives an answer it rejects is illegal
    for text, fmt in (("no tags", "x"), ("<answer>601</answer>", "x"), ("<answer>0, -5</answer>", "xy")):
        assert parse_answer(text, fmt).outcome in ILLEGAL_OUTCOMES


@pytest.mark.parametrize("outcome, gain, expected", [
    ("stable", 0, 0.0), ("stable", 1, 1.0), ("stable", 3, 3.0),
    ("unstable", None, -1.0), ("unstable", 2, -1.0),
    ("unparseable", None, -5.0), ("out_of_range", None, -5.0), ("unknown_colour", None, -5.0),
])
def test_build_reward_table(outcome, gain, expected):
    assert build_reward(outcome, gain) == expected


@pytest.mark.parametrize("outcome, gain", [("stable", None), ("stable", -1), ("stable", 1.5), ("stable", True),
                                           ("below_floor", None), ("inside_tower", 0), ("correct", None)])
def test_build_reward_rejects_bad_input(outcome, gain):
    with pytest.raises(ValueError):
        build_reward(outcome, gain)


# (simulated stable?, what the first answer asserts, labels) -> the correct answer, for each polarity.
TRUTH = [
    (True, "stable", ("Yes", "No"), "Yes"), (False, "stable", ("Yes", "No"), "No"),  # 2026: is it stable?
    (True, "falls", ("Yes", "No"), "No"), (False, "falls", ("Yes", "No"), "Yes"),  # ICML 2025: will it fall?
    (True, "stable", ("True", "False"), "True"), (False, "stable", ("True", "False"), "False"),  # ShapeStacks
]


@pytest.mark.parametrize("stable, yes_means, labels, correct", TRUTH)
def test_binary_truth_and_outcome_in_every_polarity(stable, yes_means, labels, correct):
    assert binary_truth(stable, yes_means, labels) == correct
    wrong = labels[1] if correct == labels[0] else labels[0]
    assert binary_outcome(correct, stable, yes_means, labels) == "correct"
    assert binary_outcome(wrong, stable, yes_means, labels) == "incorrect"
    assert binary_outcome(None, stable, yes_means, labels) == "unparseable"
    assert [binary_reward(binary_outcome(a, stable, yes_means, labels)) for a in (correct, wrong, None)] == [1, 0, -1]


def test_unknown_polarity_raises():
    with pytest.raises(ValueError, match="yes_means"):
        binary_truth(True, "upright")
