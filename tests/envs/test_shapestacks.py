"""ShapeStacksStability-v0 (DESIGN.md section 8): ShapeStacks-like stacks of cubes, cuboids, cylinders and
spheres, True = balanced; and the block shapes it adds to envs.scenes / envs.physics."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import shapestacks as ss
from envs.answers import parse_answer
from envs.bullet import pybullet as p
from envs.physics import World
from envs.prompts import REASONING, SHAPESTACKS_STABILITY
from envs.rewards import binary_outcome, binary_reward
from envs.scenes import IDENTITY, Cube, Scene

from .com_rule import shape_stack_margin
from .test_tower_env import INFO_KEYS, STEP_KEYS

ENV_ID = "ShapeStacksStability-v0"
TASK = "shapestacks_stability"
WORLD_KEYS = {"yes_means", "falls", "shapes", "kinds", "sizes", "extents", "rotations", "offsets", "level_margins",
              "com_margin", "difficulty", "difficulty_level", "violation"}
NEAR = 0.02  # block edges: scenes this close to the rule's threshold are reported, not asserted
GREEN, BLUE, YELLOW = (30, 180, 50), (30, 70, 220), (235, 205, 20)
ON_SIDE = (0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4))  # a cylinder's axis along x


def _box(x, z, e=(1.0, 1.0, 1.0), color=GREEN):
    return Cube(x, 0.0, z, max(e), color, IDENTITY, "cuboid", tuple(e))


def _sphere(x, z, d=0.8):
    return Cube(x, 0.0, z, d, BLUE, IDENTITY, "sphere", (d, d, d))


def _cylinder(x, z, d, h, lying=False):
    return Cube(x, 0.0, z, max(d, h), YELLOW, ON_SIDE if lying else IDENTITY, "cylinder", (d, d, h))


def _stack(*blocks):
    return Scene("shapestacks", tuple(blocks), len(blocks) - 1)


STANDS = _stack(Cube(0.0, 0.0, 0.5, 1.0, GREEN), Cube(0.1, 0.0, 1.5, 1.0, BLUE))
FALLS = _stack(Cube(0.0, 0.0, 0.5, 1.0, GREEN), Cube(0.8, 0.0, 1.5, 1.0, BLUE))


def _env_with(scene, **kwargs):
    env = envs.TowerEnv(TASK, **kwargs)
    env.reset(options={"scene": scene.to_dict()})
    return env


# -- registration, prompt, kwargs ------------------------------------------------------------

def test_registered_as_a_world_after_tower_stability():
    assert ENV_ID in envs.WORLD_ENV_IDS and envs.WORLD_ENV_IDS[0] == "TowerStability-v0"
    assert ENV_ID not in envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.REAL_ENV_IDS
    assert TASK not in envs.TASKS
    env = gym.make(f"envs:{ENV_ID}").unwrapped
    assert (env.task, env.answer_format, env.yes_means, env.n_blocks) == (TASK, "true_false", "stable", (2, 6))


def test_prompt_asks_true_or_false_in_the_tags():
    assert SHAPESTACKS_STABILITY.endswith(" Return your final answer between <answer> </answer>.")
    assert "True if the stack is balanced" in SHAPESTACKS_STABILITY and "False if it is unbalanced" in SHAPESTACKS_STABILITY
    assert gym.make(ENV_ID).reset(seed=1)[0]["prompt"] == SHAPESTACKS_STABILITY
    assert gym.make(ENV_ID, reasoning=True).reset(seed=1)[0]["prompt"] == SHAPESTACKS_STABILITY.replace(
        " Return your final", f" {REASONING} Return your final")


@pytest.mark.parametrize("height", [(2, 3), (4, 6), (2, 2), (6, 6)])
def test_height_gives_the_shapestacks_splits(height):
    rng = np.random.default_rng(0)
    heights = {ss.shape_stack(rng, height).n_blocks for _ in range(60)}
    assert heights == set(range(height[0], height[1] + 1))
    assert gym.make(ENV_ID, height=height).reset(seed=1)[1]["n_blocks"] in heights


def test_difficulty_none_mixes_both_levels_equally_and_half_stand():
    rng = np.random.default_rng(1)
    infos = [ss.stack_info(ss.shape_stack(rng)) for _ in range(300)]
    assert 0.42 < np.mean([i["difficulty_level"] == "easy" for i in infos]) < 0.58
    assert 0.42 < np.mean([i["com_margin"] > 0 for i in infos]) < 0.58
    for level in ss.DIFFICULTIES:
        rng = np.random.default_rng(2)
        assert {ss.stack_info(ss.shape_stack(rng, difficulty=level))["difficulty_level"] for _ in range(40)} == {level}


@pytest.mark.parametrize("kwargs,match", [
    ({"height": (1, 3)}, r"2 <= min <= max <= 6.*\(1, 3\)"), ({"height": (5, 7)}, r"\(5, 7\)"),
    ({"height": (4, 3)}, r"\(4, 3\)"), ({"height": 5}, "pair of ints, got 5"), ({"height": (2.0, 3)}, "pair of ints"),
    ({"difficulty": "medium"}, "difficulty must be None, 'easy' or 'hard', got 'medium'"),
    ({"n_blocks": (2, 4)}, "n_blocks=.* does not apply to task .shapestacks_stability., which takes height and difficulty"),
    ({"rows": (2, 3)}, "rows="), ({"interaction": "retry"}, r"takes interaction in \['single'\]"),
])
def test_bad_kwargs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.TowerEnv(TASK, **kwargs)


# -- polarity: True means the stack is balanced -----------------------------------------------

# (answer, stack stands?, outcome, reward)
POLARITY = [
    ("<answer>True</answer>", True, "correct", 1.0),
    ("<answer>False</answer>", True, "incorrect", 0.0),
    ("<answer>False</answer>", False, "correct", 1.0),
    ("<answer>True</answer>", False, "incorrect", 0.0),
    ("<answer> true. </answer>", True, "correct", 1.0),
    ("It wobbles. <answer>FALSE!</answer>", False, "correct", 1.0),
    ("<answer>False</answer> no: <answer>True</answer>", True, "correct", 1.0),  # the last block
    ("True", True, "unparseable", -1.0),
    ("<answer>Yes</answer>", True, "unparseable", -1.0),
    ("<answer>balanced</answer>", True, "unparseable", -1.0),
    ("<answer>True, it stands</answer>", True, "unparseable", -1.0),
    ("", False, "unparseable", -1.0),
]


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_pure(answer, stands, outcome, reward):
    value = parse_answer(answer, "true_false").value
    got = binary_outcome(value, stands, "stable", ("True", "False"))
    assert (got, binary_reward(got)) == (outcome, reward)


@pytest.mark.parametrize("answer,stands,outcome,reward", POLARITY)
def test_polarity_table_through_the_env(answer, stands, outcome, reward):
    _, r, terminated, truncated, info = _env_with(STANDS if stands else FALLS, image_size=16).step(answer)
    assert (info["outcome"], r, terminated, truncated) == (outcome, reward, True, False)
    assert info["stable_initially"] is stands and info["falls"] is (not stands)
    assert info["optimal_action"] == f"<answer>{stands}</answer>"


def test_oracle_earns_one_and_constants_about_a_half():
    env = gym.make(ENV_ID, image_size=16, height=(2, 3))
    rewards = {"oracle": [], "<answer>True</answer>": [], "<answer>False</answer>": []}
    for seed in range(40):
        _, info = env.reset(seed=seed)
        for answer in rewards:
            rewards[answer].append(env.unwrapped.judge(info["optimal_action"] if answer == "oracle" else answer)[0])
    assert np.mean(rewards["oracle"]) == 1.0
    assert 0.25 < np.mean(rewards["<answer>True</answer>"]) < 0.75
    assert np.mean(rewards["<answer>True</answer>"]) + np.mean(rewards["<answer>False</answer>"]) == 1.0


# -- the episode contract ---------------------------------------------------------------------

def test_info_keys_and_values():
    env = gym.make(ENV_ID, image_size=32)
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        assert INFO_KEYS | WORLD_KEYS <= set(info)
        json.dumps(info, allow_nan=False)  # plain JSON all through
        n = info["n_blocks"]
        assert info["task"] == TASK and info["answer_format"] == "true_false" and info["yes_means"] == "stable"
        assert info["falls"] is (not info["stable_initially"])
        assert all(len(info[k]) == n for k in ("shapes", "kinds", "sizes", "extents", "rotations"))
        assert len(info["offsets"]) == n - 1 and set(info["shapes"]) <= set(envs.scenes.SHAPES)
        assert all(s == max(e) for s, e in zip(info["sizes"], info["extents"]))
        assert info["com_margin"] == min(info["level_margins"]) and info["difficulty"] == abs(info["com_margin"])
        assert info["com_margin"] == pytest.approx(shape_stack_margin(Scene.from_dict(info["scene"])), abs=1e-3)
        assert info["difficulty_level"] in ("easy", "hard") and info["violation"] in ("none", "com", "planar")
        assert obs["image"].shape == (32, 32, 3)
    _, _, _, _, step_info = env.step(info["optimal_action"])
    assert STEP_KEYS | WORLD_KEYS <= set(step_info) and step_info["outcome"] == "correct"


def test_replay_rejects_another_familys_scene():
    _, info = gym.make("TowerStability-v0", image_size=16).reset(seed=1)
    with pytest.raises(ValueError, match="'stability'"):
        gym.make(ENV_ID).reset(options={"scene": info["scene"]})


def test_render_shows_the_fall_after_a_step():
    env = _env_with(FALLS, render_mode="rgb_array", image_size=64)
    before = env.render()
    env.step("<answer>False</answer>")
    assert not np.array_equal(env.render(), before)


# -- the shapes in envs.scenes and envs.physics ------------------------------------------------

def test_cubes_keep_their_old_dict_form_and_other_shapes_round_trip():
    cube = Cube(0.1, 0.0, 0.5, 1.0, GREEN)
    assert (cube.shape, cube.extents) == ("cube", None)
    assert set(STANDS.to_dict()["cubes"][0]) == {"x", "y", "z", "size", "color"}
    old = {"family": "shapestacks", "target": 1, "cubes": [{"x": 0, "y": 0, "z": 0.5, "size": 1, "color": [1, 2, 3]},
                                                         {"x": 0, "y": 0, "z": 1.5, "size": 1, "color": [1, 2, 4]}]}
    assert Scene.from_dict(old).cubes[0] == Cube(0.0, 0.0, 0.5, 1.0, (1, 2, 3))
    scene = _stack(_box(0.0, 0.3, (1.0, 0.8, 0.6)), _cylinder(0.0, 0.9, 0.6, 0.6, lying=True), _sphere(0.0, 1.6, 0.8))
    d = json.loads(json.dumps(scene.to_dict()))
    assert [c["shape"] for c in d["cubes"]] == ["cuboid", "cylinder", "sphere"] and d["cubes"][0]["extents"] == [1, 0.8, 0.6]
    assert Scene.from_dict(d) == scene


@pytest.mark.parametrize("block,match", [
    ({"shape": "cone", "extents": [1, 1, 1]}, "shape must be one of"),
    ({"shape": "cube", "extents": [1, 1, 1]}, "a cube has no extents"),
    ({"shape": "cuboid"}, "three positive extents"), ({"shape": "cuboid", "extents": [1, 0, 1]}, "three positive"),
    ({"shape": "cuboid", "extents": [0.5, 0.5, 0.5]}, "size must be its largest extent"),
    ({"shape": "cylinder", "extents": [1, 0.5, 1]}, "diameter and must be equal"),
    ({"shape": "sphere", "extents": [1, 1, 0.9]}, "three extents are its diameter"),
])
def test_from_dict_rejects_bad_shapes(block, match):
    d = {"family": "shapestacks", "target": 1, "cubes": [{"x": 0, "y": 0, "z": 0.5, "size": 1, "color": [1, 2, 3]},
                                                       {"x": 0, "y": 0, "z": 1.5, "size": 1, "color": [1, 2, 4], **block}]}
    with pytest.raises(ValueError, match=match):
        Scene.from_dict(d)


def test_physics_builds_each_shape_with_its_extents_and_volume_as_mass():
    blocks = (_box(0.0, 0.3, (1.0, 0.8, 0.6)), _cylinder(3.0, 0.4, 0.6, 0.8), _cylinder(-3.0, 0.3, 0.6, 1.2, lying=True),
              _sphere(0.0, 3.0, 0.8), Cube(2.0, 2.0, 0.35, 0.7, GREEN))
    world = World()
    world.load(Scene("shapestacks", blocks, 4))
    for body, block in zip(world._bodies, blocks):
        assert p.getDynamicsInfo(body, -1, physicsClientId=world.client)[0] == pytest.approx(ss.volume(block))
    lo, hi = (np.array(v) for v in p.getAABB(world._bodies[2], physicsClientId=world.client))
    assert hi - lo == pytest.approx([1.2, 0.6, 0.6], abs=0.05)  # on its side, its axis along x
    assert [ss.kind_of(b) for b in blocks] == ["cuboid", "cylinder", "lying", "sphere", "cube"]
    world.close()


# -- the generator and the stability rule ------------------------------------------------------

def test_generator_guarantees():
    assert ss.shape_stack(np.random.default_rng(3)) == ss.shape_stack(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    for level in ss.DIFFICULTIES:
        for _ in range(80):
            scene = ss.shape_stack(rng, difficulty=level)
            info = ss.stack_info(scene)
            blocks, kinds, n = scene.cubes, info["kinds"], scene.n_blocks
            assert 2 <= n <= 6 and scene.target == n - 1 and len({b.color for b in blocks}) == n
            heights = [b.extents[0] if k in ("sphere", "lying") else (b.extents or (b.size,) * 3)[2]
                       for b, k in zip(blocks, kinds)]
            tops = np.cumsum(heights)
            assert all(b.z == pytest.approx(top - h / 2) for b, top, h in zip(blocks, tops, heights))
            assert tops[-1] <= 5.7 + 1e-9 and all(abs(b.x) < 3.0 for b in blocks)  # inside the camera's frame
            curved_below = [i for i, k in enumerate(kinds[:-1]) if k in ("sphere", "lying")]
            assert len(curved_below) <= 1 and (info["violation"] == "planar") == bool(curved_below)
            margin = info["com_margin"]
            assert info["difficulty_level"] == level
            if level == "easy":
                assert abs(margin) >= ss.EASY_MARGIN - 1e-6
            else:
                assert ss.HARD_MARGIN[0] - 1e-6 <= abs(margin) <= ss.HARD_MARGIN[1] + 1e-6
            assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_rule_geometry_on_known_cases():
    assert ss.com_margin(STANDS) == pytest.approx(0.4) and ss.com_margin(FALLS) == pytest.approx(-0.3)
    # An upright cylinder (diameter 0.6) 0.1 from a unit box's centre: the disc is the contact, 0.3 radius.
    assert ss.com_margin(_stack(_box(0.0, 0.5), _cylinder(0.1, 1.4, 0.6, 0.8))) == pytest.approx(0.3)
    # A unit box on that cylinder, 0.2 off: the box's centre 0.1 inside the disc's edge.
    assert ss.com_margin(_stack(_cylinder(0.0, 0.4, 0.6, 0.8), _box(0.2, 1.3))) == pytest.approx(0.1)
    # Two discs 0.5 apart (radii 0.4 and 0.3): the upper's centre lies on the lower's boundary (exact, no polygon).
    assert ss.com_margin(_stack(_cylinder(0.0, 0.3, 0.8, 0.6), _cylinder(0.4, 0.9, 0.6, 0.6))) == pytest.approx(0.0, abs=1e-12)
    # A sphere on top: neutral rest; its margin is its contact's inset in the face below.
    assert ss.com_margin(_stack(_box(0.0, 0.5), _sphere(0.3, 1.4))) == pytest.approx(0.2)
    # Planar-surface violations: minus the distance of the centre of mass above from the contact.
    on_ball = _stack(_box(0.0, 0.5), _sphere(0.0, 1.4), _box(0.05, 2.3))
    assert ss.level_margins(on_ball)[-1] == pytest.approx(-0.05) and ss.com_margin(on_ball) == pytest.approx(-0.05)
    log = _cylinder(0.0, 1.3, 0.6, 1.2, lying=True)  # its axis along x
    on_log = _stack(_box(0.0, 0.5), log, Cube(0.2, 0.1, 1.9, 1.0, GREEN))
    assert ss.level_margins(on_log)[-1] == pytest.approx(-0.1)  # across the top line: off balance
    along = _stack(_box(0.0, 0.5), log, Cube(0.2, 0.0, 1.9, 1.0, GREEN))
    assert ss.level_margins(along)[-1] == pytest.approx(0.0, abs=1e-12)  # on the line: the threshold itself
    with pytest.raises(ValueError, match="upright or lie on its side"):
        ss.kind_of(Cube(0, 0, 1, 1.0, YELLOW, (0.0, math.sin(0.3), 0.0, math.cos(0.3)), "cylinder", (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="at least 2 blocks"):
        ss.com_margin(_stack(_box(0.0, 0.5)))
    apart = _stack(_box(0.0, 0.5), _box(2.0, 1.5))
    assert ss.com_margin(apart) == pytest.approx(-1.5)  # minus the centre's distance from the lower box


def test_rule_matches_the_independent_implementation():
    rng = np.random.default_rng(7)
    for _ in range(150):
        scene = ss.shape_stack(rng)
        assert ss.com_margin(scene) == pytest.approx(shape_stack_margin(scene), abs=1e-4)


def test_verdict_matches_the_rule_on_random_stacks(capsys):
    """The simulated verdict against the rule (tests/envs/com_rule.py, written apart from envs)."""
    world = ss.ShapeStacksWorld()
    rng = np.random.default_rng(2026)
    margins, stable = [], []
    for _ in range(320):
        scene = ss.shape_stack(rng)
        world.load(scene)
        stable.append(world.settle().stable)
        margins.append(shape_stack_margin(scene))
    world.close()
    far = [(m > 0) == s for m, s in zip(margins, stable) if abs(m) >= NEAR]
    near = [(m > 0) == s for m, s in zip(margins, stable) if abs(m) < NEAR]
    assert len(far) >= 300
    assert sum(far) / len(far) >= 0.99, f"{len(far) - sum(far)} of {len(far)} stacks disagree with the rule"
    assert 0.35 < np.mean(stable) < 0.65
    with capsys.disabled():
        print(f"\nShapeStacks rule agreement: {sum(far)}/{len(far)} beyond {NEAR} edges of the threshold, "
              f"{sum(near)}/{len(near)} within it")
