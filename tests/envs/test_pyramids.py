"""PyramidCounterfactual-v0 (DESIGN.md section 8): the ICML 2025 causal pyramids; Yes means other blocks fall."""

import json
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import pyramids as pm
from envs.answers import parse_answer
from envs.prompts import PYRAMID_COUNTERFACTUAL, PYRAMID_COUNTERFACTUAL_PRE_PROMPT, REASONING
from envs.rewards import binary_outcome, binary_reward
from envs.scenes import PALETTE, RED, Cube, Scene

from .com_rule import face_contacts, holds, pyramid_without_red
from .test_tower_env import INFO_KEYS, STEP_KEYS

ENV_ID = "PyramidCounterfactual-v0"
WORLD_KEYS = {"yes_means", "falls", "removed", "fell", "counterfactual_steps", "rows", "red_row", "red_position",
              "sizes", "offsets", "gaps", "com_margin", "difficulty"}
NEAR = 0.02  # block edges: scenes this close to the rule's threshold are reported, not asserted
PAPER_PROMPTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper-prompts.md"
GREEN, BLUE, YELLOW = PALETTE["green"], PALETTE["blue"], PALETTE["yellow"]


def _two_rows(top_x, red):
    """Two unit cubes on the floor 0.1 apart and one on them at ``top_x``; ``red`` (0 or 1) is red."""
    bottom = [Cube(-0.55, 0.0, 0.5, 1.0, GREEN), Cube(0.55, 0.0, 0.5, 1.0, BLUE)]
    bottom[red] = Cube(bottom[red].x, 0.0, 0.5, 1.0, RED)
    return Scene("pyramid", (*bottom, Cube(top_x, 0.0, 1.5, 1.0, YELLOW)), red)


# Without the red cube the top one rests on the other with its centre 0.25 inside (stands) or outside (falls).
STANDS, FALLS = _two_rows(-0.3, 1), _two_rows(0.2, 1)


def _env_with(scene, **kwargs):
    env = envs.TowerEnv("pyramid_counterfactual", **kwargs)
    env.reset(options={"scene": scene.to_dict()})
    return env


# -- registration, prompt, kwargs ------------------------------------------------------------

def test_registered_as_a_world_not_one_of_the_papers_tasks():
    assert envs.WORLD_ENV_IDS[0] == "TowerStability-v0" and ENV_ID in envs.WORLD_ENV_IDS
    assert ENV_ID not in envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.REAL_ENV_IDS
    assert "pyramid_counterfactual" not in envs.TASKS
    assert gym.make(f"envs:{ENV_ID}").unwrapped.task == "pyramid_counterfactual"


def test_prompt_is_the_icml_pre_prompt_plus_our_one_sentence():
    pre = ("You are now viewing a pyramid of blocks. If the red block was not there, would any other blocks "
           "fall? Answer Yes if you think that other blocks would fall if the red block was not there. Answer "
           "No if you think that no other blocks would fall if the red block was not there.")
    assert PYRAMID_COUNTERFACTUAL_PRE_PROMPT == pre
    assert PYRAMID_COUNTERFACTUAL == pre + " Return your final answer between <answer> </answer>."
    assert envs.TowerEnv("pyramid_counterfactual").prompt == PYRAMID_COUNTERFACTUAL
    reasoning = envs.TowerEnv("pyramid_counterfactual", reasoning=True).prompt
    assert reasoning == f"{pre} {REASONING} Return your final answer between <answer> </answer>."


@pytest.mark.skipif(not PAPER_PROMPTS.is_file(), reason=f"no {PAPER_PROMPTS} (the team's shared folder)")
def test_pre_prompt_is_verbatim_from_the_shared_paper_prompts():
    section = PAPER_PROMPTS.read_text().split("(ICML 2025)", 1)[1]
    block = section.split("Causal pyramids (counterfactual)", 1)[1].split("\n\n", 2)[1]
    assert block.strip() == PYRAMID_COUNTERFACTUAL_PRE_PROMPT


def test_rows_gives_the_splits():
    for rows in [(2, 3), (4, 5), (3, 3)]:
        got = {pm.pyramid_info(pm.pyramid(np.random.default_rng(s), rows))["rows"] for s in range(40)}
        assert got == set(range(rows[0], rows[1] + 1))
    _, info = gym.make(ENV_ID, rows=(5, 5), image_size=16).reset(seed=0)
    assert info["rows"] == 5 and info["n_blocks"] == 14  # the cubes other than the red one


@pytest.mark.parametrize("kwargs,match", [
    ({"rows": (1, 4)}, r"2 <= min <= max <= 5.*\(1, 4\)"), ({"rows": (2, 6)}, r"\(2, 6\)"),
    ({"rows": (4, 3)}, r"\(4, 3\)"), ({"rows": 5}, "pair of ints, got 5"), ({"rows": (2.5, 3)}, r"\(2.5, 3\)"),
    ({"n_blocks": (2, 4)}, "n_blocks=.* does not apply to task .pyramid_counterfactual.* takes rows"),
    ({"interaction": "retry"}, r"takes interaction in \['single'\]"), ({"image_size": 8}, "image_size"),
])
def test_bad_kwargs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.TowerEnv("pyramid_counterfactual", **kwargs)


# -- polarity: Yes means other blocks fall -----------------------------------------------------

# (answer, the rest stands?, outcome, reward)
POLARITY = [
    ("<answer>Yes</answer>", False, "correct", 1.0),
    ("<answer>No</answer>", False, "incorrect", 0.0),
    ("<answer>No</answer>", True, "correct", 1.0),
    ("<answer>Yes</answer>", True, "incorrect", 0.0),
    ("<answer> yes </answer>", False, "correct", 1.0),
    ("They would fall. <answer>No</answer> then <answer>Yes</answer>", False, "correct", 1.0),
    ("Yes", False, "unparseable", -1.0),
    ("<answer>fall</answer>", False, "unparseable", -1.0),
    ("<answer>False</answer>", True, "unparseable", -1.0),
    ("", True, "unparseable", -1.0),
]


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_pure(answer, stands, outcome, reward):
    got = binary_outcome(parse_answer(answer, "binary").value, stands, "falls")
    assert (got, binary_reward(got)) == (outcome, reward)


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_through_the_env(answer, stands, outcome, reward):
    _, r, terminated, truncated, info = _env_with(STANDS if stands else FALLS, image_size=16).step(answer)
    assert (info["outcome"], r, terminated, truncated) == (outcome, reward, True, False)
    # The question is about the pyramid without its red cube: the pyramid as shown stands either way.
    assert info["stable_initially"] is True and info["falls"] is (not stands)
    assert info["fell"] == ([] if stands else [2]) and info["removed"] == 1
    assert info["optimal_action"] == f"<answer>{'No' if stands else 'Yes'}</answer>"


def test_oracle_earns_one_and_constants_about_a_half():
    env = gym.make(ENV_ID, image_size=16)
    rewards = {"oracle": [], "<answer>Yes</answer>": [], "<answer>No</answer>": []}
    for seed in range(30):
        _, info = env.reset(seed=seed)
        for answer in rewards:
            reward, _ = env.unwrapped.judge(info["optimal_action"] if answer == "oracle" else answer)
            rewards[answer].append(reward)
    assert np.mean(rewards["oracle"]) == 1.0
    assert 0.25 < np.mean(rewards["<answer>Yes</answer>"]) < 0.75
    assert np.mean(rewards["<answer>Yes</answer>"]) + np.mean(rewards["<answer>No</answer>"]) == 1.0


# -- the episode contract ---------------------------------------------------------------------

def test_info_keys_and_values():
    env = gym.make(ENV_ID, image_size=32)
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        assert INFO_KEYS | WORLD_KEYS <= set(info)
        json.dumps(info)
        scene = Scene.from_dict(info["scene"])
        n, rows = len(scene.cubes), info["rows"]
        assert n == rows * (rows + 1) // 2 and info["n_blocks"] == n - 1
        assert info["task"] == "pyramid_counterfactual" and info["yes_means"] == "falls"
        assert info["stable_initially"] is True  # the pyramid as shown stands
        assert info["removed"] == scene.target and scene.cubes[scene.target].color == RED
        assert sum(c.color == RED for c in scene.cubes) == 1
        assert info["falls"] is bool(info["fell"]) and info["removed"] not in info["fell"]
        assert info["fell"] == sorted(set(info["fell"])) and all(0 <= i < n for i in info["fell"])
        assert 0 <= info["red_row"] <= rows - 2 and 0 <= info["red_position"] < rows - info["red_row"]
        assert len(info["sizes"]) == n and len(info["offsets"]) == n - rows and len(info["gaps"]) == rows
        assert all(pm.SIZE_RANGE[0] <= s <= pm.SIZE_RANGE[1] for s in info["sizes"])
        lo, hi = pm.BASE_GAP_RANGES[rows]
        assert all(lo <= g <= hi for g in info["gaps"][0])
        assert all(pm.GAP_RANGE[0] <= g <= pm.GAP_RANGE[1] for row in info["gaps"][1:] for g in row)
        assert info["difficulty"] == abs(info["com_margin"])
        assert obs["image"].shape == (32, 32, 3)
    _, _, _, _, step_info = env.step(info["optimal_action"])
    assert STEP_KEYS | WORLD_KEYS <= set(step_info) and step_info["outcome"] == "correct"


def test_replay_rejects_another_familys_scene_and_vice_versa():
    _, info = gym.make("TowerStability-v0", image_size=16).reset(seed=1)
    with pytest.raises(ValueError, match="'pyramid'"):
        gym.make(ENV_ID).reset(options={"scene": info["scene"]})
    with pytest.raises(ValueError, match="'stability'"):
        gym.make("TowerStability-v0").reset(options={"scene": STANDS.to_dict()})


# -- the generator ------------------------------------------------------------------------------

def test_generator_guarantees():
    assert pm.pyramid(np.random.default_rng(3)) == pm.pyramid(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    red_rows, sizes = Counter(), Counter()
    world = pm.PyramidWorld()
    for i in range(1200):
        scene = pm.pyramid(rng)
        rows = pm.layout(scene)
        n, red_row = len(rows), next(k for k, row in enumerate(rows) if scene.target in row)
        red_rows[(n, red_row)] += 1
        sizes[n] += 1
        assert red_row < n - 1  # never the top row
        for k, row in enumerate(rows[1:], start=1):
            below = rows[k - 1]
            for j, i_up in enumerate(row):  # each cube rests on the two below it
                up = scene.cubes[i_up]
                for i_low in below[j:j + 2]:
                    low = scene.cubes[i_low]
                    overlap = min(up.x + up.size / 2, low.x + low.size / 2) - max(up.x - up.size / 2,
                                                                               low.x - low.size / 2)
                    assert overlap >= pm.CONTACT_MIN - 1e-12
                    assert up.z == pytest.approx(low.z + (low.size + up.size) / 2, abs=1e-12)
                    assert up.color != low.color
        for row in rows:
            assert all(scene.cubes[a].color != scene.cubes[b].color for a, b in zip(row, row[1:]))
        # Inside the camera's frame: x within [-4.5, 4.5], the top below z = 6.9.
        assert all(abs(c.x) + c.size / 2 < 4.5 and c.z + c.size / 2 < 6.9 for c in scene.cubes)
        if i < 60:  # the pyramid as shown stands, by simulation
            world.load(scene)
            assert world.settle().stable, scene
    world.close()
    assert set(sizes) == {2, 3, 4, 5} and min(sizes.values()) > 250  # 300 expected each
    for n in range(2, 6):  # each eligible row about equally likely
        counts = [red_rows[(n, k)] for k in range(n - 1)]
        assert min(counts) > 0.7 * sizes[n] / (n - 1), (n, counts)
    with pytest.raises(ValueError, match="pair of ints"):
        pm.pyramid(np.random.default_rng(0), (1, 3))


def test_layout_rejects_what_is_not_a_pyramid():
    tower = Scene("pyramid", (Cube(0.0, 0.0, 0.5), Cube(0.0, 0.0, 1.5)), 0)
    with pytest.raises(ValueError, match="not a pyramid"):
        pm.layout(tower)


# -- the equilibrium rule and the simulation -------------------------------------------------------

def test_rule_on_known_cases():
    # One cube on one support: the signed distance of its centre from the support's nearer end.
    assert pm.com_margin(STANDS) == pytest.approx(0.25, abs=2e-4)
    assert pm.com_margin(FALLS) == pytest.approx(-0.25, abs=2e-4)
    assert pm.equilibrium_margin(STANDS.cubes) > 0
    assert pm.stands([]) and not pm.stands([Cube(0.0, 0.0, 1.5)])  # a cube in the air
    # A cube over the hole, held by the load on its far end: without that load it falls.
    bottom = [Cube(x, 0.0, 0.5, 1.0, GREEN) for x in (-1.1, 0.0, 1.1)]
    a, b = Cube(-0.6, 0.0, 1.5, 1.0, BLUE), Cube(0.55, 0.0, 1.5, 1.0, BLUE)
    top = Cube(0.0, 0.0, 2.5, 1.0, YELLOW)
    held = [*bottom[1:], a, b, top]
    assert pm.stands(held) and holds(held)
    assert not pm.stands(held[:-1]) and not holds(held[:-1])
    world = pm.PyramidWorld()
    for cubes, expected in ((held, True), (held[:-1], False)):
        world.load(Scene("pyramid", tuple(cubes), 0))
        verdict, moved = world.settle_each()
        assert verdict.stable is expected and any(moved) is not expected
    world.close()


def test_module_margin_matches_the_oracle():
    """envs.pyramids' simplex and margin against tests/envs/com_rule.py (another formulation, scipy's solver)."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(77)
    for _ in range(40):
        scene = pm.pyramid(rng)
        m = pm.com_margin(scene)
        rest = pyramid_without_red(scene)
        assert len(face_contacts(rest)) == len(pm.contacts(rest))
        assert holds(rest) is (m > 0)
        if abs(m) < pm.MARGIN_CAP - 1e-3:
            assert holds(rest, m - 1e-3) and not holds(rest, m + 1e-3), m


def test_verdict_matches_the_equilibrium_rule(capsys):
    """The simulated counterfactual against the rule (tests/envs/com_rule.py, written apart from envs)."""
    pytest.importorskip("scipy")
    world = pm.PyramidWorld()
    rng = np.random.default_rng(2025)
    far, near = [], []
    for _ in range(340):
        scene = pm.pyramid(rng)
        rest = pyramid_without_red(scene)
        world.load(Scene("pyramid", tuple(rest), 0))
        stable = world.settle().stable
        if holds(rest, NEAR):
            far.append(stable)
        elif not holds(rest, -NEAR):
            far.append(not stable)
        else:
            near.append(stable == holds(rest))
    world.close()
    assert len(far) >= 300
    assert sum(far) / len(far) >= 0.99, f"{len(far) - sum(far)} of {len(far)} scenes disagree with the rule"
    with capsys.disabled():
        print(f"\nPyramidCounterfactual equilibrium-rule agreement: {sum(far)}/{len(far)} beyond {NEAR} edges "
              f"of the threshold, {sum(near)}/{len(near)} within it")
