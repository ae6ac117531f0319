"""TowerStability-v0 (DESIGN.md section 8): the ICML 2025 towers, where Yes means the tower falls."""

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import stability_towers as st
from envs.answers import parse_answer
from envs.prompts import REASONING, TOWER_STABILITY, TOWER_STABILITY_PRE_PROMPT
from envs.rewards import binary_outcome, binary_reward, binary_truth
from envs.scenes import Cube, Scene

from .com_rule import com_margin_rotated
from .test_tower_env import INFO_KEYS, STEP_KEYS

ENV_ID = "TowerStability-v0"
WORLD_KEYS = {"yes_means", "falls", "sizes", "rotations", "offsets", "com_margin", "difficulty"}
NEAR = 0.02  # block edges: scenes this close to the rule's threshold are reported, not asserted
PAPER_PROMPTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper-prompts.md"
GREEN, BLUE = (30, 180, 50), (30, 70, 220)


def _tower(*xs, size=1.0):
    """An upright stack of equal cubes with centres at ``xs`` (bottom first)."""
    cubes = tuple(Cube(x, 0.0, (i + 0.5) * size, size, GREEN if i % 2 else BLUE) for i, x in enumerate(xs))
    return Scene("stability", cubes, len(cubes) - 1)


STANDS, FALLS = _tower(0.0, 0.1), _tower(0.0, 0.8)


def _env_with(scene, **kwargs):
    env = envs.TowerEnv("tower_stability", **kwargs)
    env.reset(options={"scene": scene.to_dict()})
    return env


# -- registration, prompt, kwargs ------------------------------------------------------------

def test_registered_as_a_world_not_one_of_the_papers_tasks():
    assert ENV_ID in envs.WORLD_ENV_IDS
    assert ENV_ID not in envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.REAL_ENV_IDS
    assert "tower_stability" not in envs.TASKS  # TASKS stays the paper's four
    assert gym.make(f"envs:{ENV_ID}").unwrapped.task == "tower_stability"


def test_prompt_is_the_icml_pre_prompt_plus_our_one_sentence():
    pre = ("You are now viewing a tower of blocks. Will the tower fall? Answer Yes if you think this tower is "
           "unstable and will fall. Answer No if you think this tower is stable and will not fall.")
    assert TOWER_STABILITY_PRE_PROMPT == pre
    assert TOWER_STABILITY == pre + " Return your final answer between <answer> </answer>."
    assert gym.make(ENV_ID).reset(seed=0)[0]["prompt"] == TOWER_STABILITY
    reasoning = gym.make(ENV_ID, reasoning=True).reset(seed=0)[0]["prompt"]
    assert reasoning == f"{pre} {REASONING} Return your final answer between <answer> </answer>."


@pytest.mark.skipif(not PAPER_PROMPTS.is_file(), reason=f"no {PAPER_PROMPTS} (the team's shared folder)")
def test_pre_prompt_is_verbatim_from_the_shared_paper_prompts():
    section = PAPER_PROMPTS.read_text().split("(ICML 2025)", 1)[1]
    block = section.split("Cubeworld towers", 1)[1].split("\n\n", 2)[1]
    assert block.strip() == TOWER_STABILITY_PRE_PROMPT


@pytest.mark.parametrize("n_blocks", [(2, 4), (5, 7), (3, 3), (7, 7)])
def test_n_blocks_gives_the_papers_splits(n_blocks):
    env = gym.make(ENV_ID, n_blocks=n_blocks)
    heights = {env.reset(seed=s)[1]["n_blocks"] for s in range(40)}
    assert heights == set(range(n_blocks[0], n_blocks[1] + 1))


@pytest.mark.parametrize("kwargs,match", [
    ({"n_blocks": (1, 4)}, r"2 <= min <= max <= 7.*\(1, 4\)"), ({"n_blocks": (5, 8)}, r"\(5, 8\)"),
    ({"n_blocks": (4, 3)}, r"\(4, 3\)"), ({"n_blocks": 5}, "pair of ints, got 5"),
    ({"n_blocks": (2.5, 3)}, r"\(2.5, 3\)"), ({"n_blocks": ("2", "4")}, "pair of ints"),
    ({"interaction": "retry"}, r"interaction='retry'.*takes interaction in \['single'\]"), ({"max_attempts": 2}, "max_attempts"),
    ({"sizes": (0.5, 1.0)}, "sizes=.* does not apply to task .tower_stability."), ({"image_size": 8}, "image_size"),
])
def test_bad_kwargs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.TowerEnv("tower_stability", **kwargs)


# -- polarity: Yes means the tower falls -------------------------------------------------------

# (answer, tower stands?, outcome, reward)
POLARITY = [
    ("<answer>Yes</answer>", False, "correct", 1.0),
    ("<answer>No</answer>", False, "incorrect", 0.0),
    ("<answer>No</answer>", True, "correct", 1.0),
    ("<answer>Yes</answer>", True, "incorrect", 0.0),
    ("<answer>yes.</answer>", False, "correct", 1.0),
    ("I think it falls. <answer> NO! </answer>", True, "correct", 1.0),
    ("<answer>No</answer> on reflection <answer>Yes</answer>", False, "correct", 1.0),  # the last block
    ("Yes", False, "unparseable", -1.0),
    ("<answer>falls</answer>", False, "unparseable", -1.0),
    ("<answer>Yes, it falls</answer>", False, "unparseable", -1.0),
    ("<answer>True</answer>", True, "unparseable", -1.0),
    ("", True, "unparseable", -1.0),
]


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_pure(answer, stands, outcome, reward):
    value = parse_answer(answer, "binary").value
    got = binary_outcome(value, stands, "falls")
    assert (got, binary_reward(got)) == (outcome, reward)
    # The paper's 2026 stability prompts read the same answers the other way round.
    flipped = {"correct": "incorrect", "incorrect": "correct", "unparseable": "unparseable"}[outcome]
    assert binary_outcome(value, stands, "stable") == flipped


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_through_the_env(answer, stands, outcome, reward):
    _, r, terminated, truncated, info = _env_with(STANDS if stands else FALLS).step(answer)
    assert (info["outcome"], r, terminated, truncated) == (outcome, reward, True, False)
    assert info["stable_initially"] is stands and info["falls"] is (not stands)
    assert info["optimal_action"] == f"<answer>{'No' if stands else 'Yes'}</answer>"


def test_binary_truth_and_bad_polarity():
    assert [binary_truth(s, y) for s in (True, False) for y in ("stable", "falls")] == ["Yes", "No", "No", "Yes"]
    with pytest.raises(ValueError, match="yes_means.*'fall'"):
        binary_truth(True, "fall")


def test_oracle_earns_one_and_constants_about_a_half():
    env = gym.make(ENV_ID)
    rewards = {"oracle": [], "<answer>Yes</answer>": [], "<answer>No</answer>": []}
    for seed in range(60):
        _, info = env.reset(seed=seed)
        for answer in rewards:
            reward, _ = env.unwrapped.judge(info["optimal_action"] if answer == "oracle" else answer)
            rewards[answer].append(reward)
    assert np.mean(rewards["oracle"]) == 1.0
    assert 0.3 < np.mean(rewards["<answer>Yes</answer>"]) < 0.7
    assert np.mean(rewards["<answer>Yes</answer>"]) + np.mean(rewards["<answer>No</answer>"]) == 1.0


# -- the episode contract ---------------------------------------------------------------------

def test_info_keys_and_values():
    env = gym.make(ENV_ID)
    for seed in range(25):
        obs, info = env.reset(seed=seed)
        assert INFO_KEYS | WORLD_KEYS <= set(info)
        json.dumps(info)  # plain JSON all through
        n = info["n_blocks"]
        assert info["task"] == "tower_stability" and info["answer_format"] == "binary"
        assert info["yes_means"] == "falls" and info["falls"] is (not info["stable_initially"])
        assert len(info["sizes"]) == len(info["rotations"]) == n and len(info["offsets"]) == n - 1
        assert all(st.SIZE_RANGE[0] <= s <= st.SIZE_RANGE[1] for s in info["sizes"])
        assert all(st.ROTATION_RANGE[0] - 1e-9 <= a <= st.ROTATION_RANGE[1] + 1e-9 for a in info["rotations"])
        r = st.OFFSET_RANGES[n]
        assert all(abs(dx) <= r + 1e-9 and abs(dy) <= r + 1e-9 for dx, dy in info["offsets"])
        assert info["offset"] == pytest.approx(info["offsets"][-1][0], abs=1e-12)
        assert info["difficulty"] == abs(info["com_margin"])
        assert info["com_margin"] == pytest.approx(com_margin_rotated(Scene.from_dict(info["scene"])), abs=1e-9)
        cubes = info["scene"]["cubes"]
        assert cubes[0]["z"] == cubes[0]["size"] / 2  # on the floor, each cube on the one below
        assert all(b["z"] == pytest.approx(a["z"] + (a["size"] + b["size"]) / 2) for a, b in zip(cubes, cubes[1:]))
        assert obs["image"].shape == (256, 256, 3) and obs["image"].dtype == np.uint8
    _, _, _, _, step_info = env.step(info["optimal_action"])
    assert STEP_KEYS | WORLD_KEYS <= set(step_info) and step_info["outcome"] == "correct"


def test_replay_rejects_another_familys_scene_and_vice_versa():
    _, info = gym.make("TopBlockStability-v0").reset(seed=0)
    with pytest.raises(ValueError, match="'stability'"):
        gym.make(ENV_ID).reset(options={"scene": info["scene"]})
    _, info = gym.make(ENV_ID).reset(seed=0)
    with pytest.raises(ValueError, match="'top_block'"):
        gym.make("TopBlockStability-v0").reset(options={"scene": info["scene"]})


def test_render_shows_the_fall_after_a_step():
    env = _env_with(FALLS, render_mode="rgb_array")
    before = env.render()
    env.step("<answer>Yes</answer>")
    assert not np.array_equal(env.render(), before)


# -- the generator and the centre-of-mass rule -------------------------------------------------

def test_generator_is_seeded_and_every_cube_rests_on_the_one_below():
    assert st.stability_tower(np.random.default_rng(3)) == st.stability_tower(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = st.stability_tower(rng)
        assert 2 <= scene.n_blocks <= 7 and scene.target == scene.n_blocks - 1
        assert all(len(st.support_polygon(a, b)) >= 3 for a, b in zip(scene.cubes, scene.cubes[1:]))
        assert len({c.color for c in scene.cubes}) == scene.n_blocks
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_rule_geometry_on_known_cases():
    assert st.com_margin(_tower(0.0, 0.1)) == pytest.approx(0.4)
    assert st.com_margin(_tower(0.0, 0.8)) == pytest.approx(-0.3)
    assert st.com_margin(_tower(0.0, 0.4, 0.8)) == pytest.approx(-0.1)  # (0.4+0.8)/2 - 0 = 0.6 > 0.5
    # A cube turned 45 degrees on an equal one: the overlap is an octagon with inradius 0.5.
    turned = Cube(0.0, 0.0, 1.5, 1.0, GREEN, (0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8)))
    octagon = st.support_polygon(Cube(0.0, 0.0, 0.5), turned)
    assert len(octagon) == 8 and st.signed_distance((0.0, 0.0), octagon) == pytest.approx(0.5)
    assert st.yaw_of(turned) == pytest.approx(45.0)
    # No overlap at all: minus the distance to the lower footprint's nearest point (its corner).
    apart = Scene("stability", (Cube(0.0, 0.0, 0.5), Cube(1.5, 1.5, 1.5)), 1)
    assert len(st.support_polygon(*apart.cubes)) == 0
    assert st.com_margin(apart) == pytest.approx(-math.hypot(1.0, 1.0))
    assert st.com_margin(_tower(0.0, 1.0)) == pytest.approx(-0.5)  # edge to edge: the shared edge
    assert st.com_margin(_tower(0.0, 1.2)) == pytest.approx(-0.7)  # a gap: the lower's near edge
    with pytest.raises(ValueError, match="at least 2 cubes"):
        st.com_margin(Scene("stability", (Cube(0.0, 0.0, 0.5),), 0))


def test_verdict_matches_centre_of_mass_rule_on_rotated_towers(capsys):
    """The simulated verdict against the rule (tests/envs/com_rule.py, written apart from envs)."""
    world = st.StabilityWorld()
    rng = np.random.default_rng(2025)
    margins, stable = [], []
    for _ in range(500):
        scene = st.stability_tower(rng)
        world.load(scene)
        stable.append(world.settle().stable)
        margins.append(com_margin_rotated(scene))
    world.close()
    far = [(m > 0) == s for m, s in zip(margins, stable) if abs(m) >= NEAR]
    near = [(m > 0) == s for m, s in zip(margins, stable) if abs(m) < NEAR]
    assert len(far) >= 300
    assert sum(far) / len(far) >= 0.99, f"{len(far) - sum(far)} of {len(far)} scenes disagree with the COM rule"
    assert 0.3 < np.mean(stable) < 0.7
    with capsys.disabled():
        print(f"\nTowerStability COM-rule agreement: {sum(far)}/{len(far)} beyond {NEAR} edges of the "
              f"threshold, {sum(near)}/{len(near)} within it")
