"""Table-driven tests of answer parsing (envs.answers)."""

import numpy as np
import pytest

from envs.answers import extract_answer, parse_answer, sample_legal_answer

X_CASES = [
    ("<answer>-35</answer>", -35, None),
    ("<answer> -35 </answer>", -35, None),
    ("<answer>+12</answer>", 12, None),
    ("<answer>0</answer>", 0, None),
    ("<answer>600</answer>", 600, None),
    ("<answer>-600</answer>", -600, None),
    ("<ANSWER>7</Answer>", 7, None),
    ("I think <answer>5</answer> no wait <answer>-8</answer>", -8, None),
    ("<answer><answer>5</answer></answer>", 5, None),
    ("<think>move left</think>\n<answer>\n-120\n</answer>", -120, None),
    ("<answer>601</answer>", None, "out_of_range"),
    ("<answer>-601</answer>", None, "out_of_range"),
    ("<answer>" + "9" * 5000 + "</answer>", None, "out_of_range"),
    ("<answer>000000000000000012</answer>", 12, None),
    ("-35", None, "unparseable"),
    ("<answer>-35", None, "unparseable"),
    ("-35</answer>", None, "unparseable"),
    ("</answer>5<answer>", None, "unparseable"),
    ("<answer>1e3</answer>", None, "unparseable"),
    ("<answer>35.0</answer>", None, "unparseable"),
    ("<answer>35 units</answer>", None, "unparseable"),
    ("<answer>NaN</answer>", None, "unparseable"),
    ("<answer>inf</answer>", None, "unparseable"),
    ("<answer></answer>", None, "unparseable"),
    ("<answer>1, 2</answer>", None, "unparseable"),
    ("<answer>\u0663\u0665</answer>", None, "unparseable"),  # Arabic-Indic digits are not ASCII integers
    ("", None, "unparseable"),
]

XY_CASES = [
    ("<answer>-250, 300</answer>", (-250, 300), None),
    ("<answer>-250 300</answer>", (-250, 300), None),
    ("<answer>-250,300</answer>", (-250, 300), None),
    ("<answer> +10 ,  0 </answer>", (10, 0), None),
    ("<answer>600, 1000</answer>", (600, 1000), None),
    ("<answer>601, 100</answer>", None, "out_of_range"),
    ("<answer>0, 1001</answer>", None, "out_of_range"),
    ("<answer>0, " + "9" * 400 + "</answer>", None, "out_of_range"),
    ("<answer>0, -1</answer>", None, "below_floor"),
    ("<answer>0, -" + "9" * 400 + "</answer>", None, "below_floor"),
    ("<answer>700, -1</answer>", None, "out_of_range"),
    ("<answer>5</answer>", None, "unparseable"),
    ("<answer>1, 2, 3</answer>", None, "unparseable"),
    ("<answer>1.5, 2</answer>", None, "unparseable"),
    ("<answer>(1, 2)</answer>", None, "unparseable"),
]

BINARY_CASES = [
    ("<answer>Yes</answer>", "Yes", None),
    ("<answer>yes</answer>", "Yes", None),
    ("<answer>YES</answer>", "Yes", None),
    ("<answer>Yes.</answer>", "Yes", None),
    ("<answer> No </answer>", "No", None),
    ("<answer>no!</answer>", "No", None),
    ("<answer>Yes</answer><answer>No</answer>", "No", None),
    ("Yes", None, "unparseable"),
    ("<answer>Yes, it is stable</answer>", None, "unparseable"),
    ("<answer>Y</answer>", None, "unparseable"),
    ("<answer>true</answer>", None, "unparseable"),
    ("<answer>Yes..</answer>", None, "unparseable"),
]


TRUE_FALSE_CASES = [
    ("<answer>True</answer>", "True", None),
    ("<answer>true</answer>", "True", None),
    ("<answer> FALSE. </answer>", "False", None),
    ("<answer>false!</answer>", "False", None),
    ("<answer>True</answer> on reflection <answer>False</answer>", "False", None),
    ("True", None, "unparseable"),
    ("<answer>Yes</answer>", None, "unparseable"),
    ("<answer>T</answer>", None, "unparseable"),
    ("<answer>True or False</answer>", None, "unparseable"),
    ("<answer>1</answer>", None, "unparseable"),
]


@pytest.mark.parametrize("fmt,cases", [("x", X_CASES), ("xy", XY_CASES), ("binary", BINARY_CASES),
                                       ("true_false", TRUE_FALSE_CASES)])
def test_parse_table(fmt, cases):
    for text, value, outcome in cases:
        parsed = parse_answer(text, fmt)
        assert (parsed.value, parsed.outcome) == (value, outcome), text[:60]
        assert parsed.legal == (outcome is None)
        assert (parsed.error is None) == (outcome is None), text[:60]


def test_non_str_is_unparseable_not_an_error():
    assert parse_answer(None, "x").outcome == "unparseable"
    assert parse_answer(b"<answer>5</answer>", "x").outcome == "unparseable"


def test_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="answer_format"):
        parse_answer("<answer>5</answer>", "xyz")


def test_extract_is_linear_on_pathological_input():
    text = "<answer>" * 20000 + "1" + "</answer>" * 20000
    assert extract_answer(text) == "1"


@pytest.mark.parametrize("fmt", ["binary", "true_false", "x", "xy"])
def test_sampled_answers_are_legal_and_cover_the_range(fmt):
    rng = np.random.default_rng(0)
    values = [parse_answer(sample_legal_answer(fmt, rng), fmt) for _ in range(2000)]
    assert all(v.legal for v in values)
    if fmt == "x":
        xs = [v.value for v in values]
        assert min(xs) < -550 and max(xs) > 550
    if fmt == "binary":
        assert {v.value for v in values} == {"Yes", "No"}
    if fmt == "true_false":
        assert {v.value for v in values} == {"True", "False"}


def test_the_action_space_holds_a_long_reasoning_completion():
    """Any string is a legal action, and the declared space does not contradict it for real completions."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from envs.answers import MAX_COMPLETION_CHARS, completion_space

    step = "The top cube overhangs the one below by about a third of an edge,\nso move it back.\t"
    reasoning = (step * (5000 // len(step) + 1))[:4980] + "<answer>-35</answer>"
    assert len(reasoning) == 5000 and "\n" in reasoning
    env = gym.make("TopBlockXOnly-v0")
    assert env.action_space.contains(reasoning) and env.action_space.contains("")
    assert completion_space().contains(reasoning) and MAX_COMPLETION_CHARS >= 2**17
    env.reset(seed=0)
    assert env.step(reasoning)[4]["parsed_action"] == -35
    env.close()
