"""TowerBuild-v0: the world rules (envs.build), the generator, the answers, the episode contract."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs import build
from envs.answers import parse_answer, sample_legal_answer
from envs.scenes import GREY, RED, Cube, Scene, tower_build


def _scene(*cubes):
    return Scene("build", (Cube(0.0, 0.0, 0.5, 1.0, GREY), *cubes), 0)


GREEN, BLUE = (30, 180, 50), (30, 70, 220)


def test_movable_tower_and_place_are_geometry():
    floor = _scene(Cube(2.0, 0.0, 0.5, 1.0, GREEN), Cube(-2.0, 0.0, 0.4, 0.8, BLUE))
    assert build.movable(floor) == [1, 2] and build.tower_stack(floor) == [0]
    placed = build.place(floor, 1, 0.3)
    assert placed.cubes[1].z == pytest.approx(1.5) and placed.cubes[1].x == pytest.approx(0.3)
    assert build.tower_stack(placed) == [0, 1] and build.movable(placed) == [2]
    on_floor_cube = build.place(floor, 1, -2.0)  # set down on the blue cube: neither can be lifted now
    assert on_floor_cube.cubes[1].z == pytest.approx(0.8 + 0.5)
    assert build.movable(on_floor_cube) == [] and build.tower_stack(on_floor_cube) == [0]


def test_oracle_takes_the_largest_cube_onto_the_top_centred():
    scene = _scene(Cube(2.0, 0.0, 0.35, 0.7, GREEN), Cube(-2.0, 0.0, 0.55, 1.1, BLUE))
    assert build.optimal_answer(scene) == "<answer>blue, 0</answer>"
    assert build.optimal_answer(build.place(scene, 2, 0.04)) == "<answer>green, 4</answer>"
    assert build.optimal_answer(_scene()) == "<answer>none, 0</answer>"


@pytest.mark.parametrize("n_blocks, sizes", [((2, 4), (1.0, 1.0)), ((4, 4), (0.5, 1.2)), ((1, 1), (0.8, 0.9))])
def test_generator_places_cubes_on_the_floor_apart(n_blocks, sizes):
    for seed in range(30):
        scene = tower_build(np.random.default_rng(seed), n_blocks, sizes)
        coloured = scene.cubes[1:]
        assert n_blocks[0] <= len(coloured) <= n_blocks[1] and scene.cubes[0].color == GREY
        assert all(sizes[0] <= c.size <= sizes[1] and c.z == c.size / 2 and abs(c.x) > 1 for c in coloured)
        assert not any(a.overlaps(b) for i, a in enumerate(scene.cubes) for b in scene.cubes[i + 1:])
        assert len({c.color for c in coloured}) == len(coloured)
        assert Scene.from_dict(scene.to_dict()) == scene


@pytest.mark.parametrize("bad", [dict(n_blocks=(0, 2)), dict(n_blocks=(2, 5)), dict(sizes=(1.0, 1.5)),
                                 dict(sizes=(0.9, 0.8))])
def test_generator_rejects_bad_ranges(bad):
    with pytest.raises(ValueError, match="must satisfy"):
        tower_build(np.random.default_rng(0), **{"n_blocks": (2, 4), "sizes": (1.0, 1.0), **bad})


@pytest.mark.parametrize("text, value, outcome", [
    ("<answer>green, 0</answer>", ("green", 0), None),
    ("<answer>  RED -600 </answer>", ("red", -600), None),
    ("<answer>Blue,+35</answer>", ("blue", 35), None),
    ("<answer>green, 601</answer>", None, "out_of_range"),
    ("<answer>green</answer>", None, "unparseable"),
    ("<answer>0, green</answer>", None, "unparseable"),
    ("<answer>light green, 0</answer>", None, "unparseable"),
    ("green, 0", None, "unparseable"),
])
def test_colour_x_answers(text, value, outcome):
    parsed = parse_answer(text, "colour_x")
    assert (parsed.value, parsed.outcome) == (value, outcome)


def test_random_colour_x_answers_are_legal_and_use_the_given_colours():
    rng = np.random.default_rng(0)
    answers = [sample_legal_answer("colour_x", rng, ["green", "red"]) for _ in range(50)]
    assert {parse_answer(a, "colour_x").value[0] for a in answers} == {"green", "red"}


@pytest.mark.parametrize("sizes", [None, (0.6, 1.2)])
def test_the_oracle_builds_a_stable_tower_of_every_cube(sizes):
    env = gym.make("TowerBuild-v0", **({"sizes": sizes} if sizes else {}))
    for seed in range(100 if sizes is None else 30):
        _, info = env.reset(seed=seed)
        n, total, done = info["n_blocks"], 0.0, False
        while not done:
            _, reward, term, trunc, info = env.step(info["optimal_action"])
            total, done = total + reward, term or trunc
        assert term and info["success"] and info["attempt"] == n, seed
        assert total == n and info["tower_height"] == n + 1 and info["movable_colours"] == []


def test_unknown_colour_and_out_of_range_are_minus_five_and_move_nothing():
    env = gym.make("TowerBuild-v0")
    _, info = env.reset(seed=0)
    present = info["movable_colours"]
    absent = next(c for c in ("green", "blue", "yellow", "orange", "purple", "cyan", "magenta", "red")
                  if c not in present)
    for answer, outcome in ((f"<answer>{absent}, 0</answer>", "unknown_colour"),
                            ("<answer>grey, 0</answer>", "unknown_colour"),
                            (f"<answer>{present[0]}, 601</answer>", "out_of_range")):
        obs, reward, term, trunc, step_info = env.step(answer)
        assert (reward, step_info["outcome"], term) == (-5.0, outcome, False)
        assert step_info["scene_now"] == info["scene"] and step_info["movable_colours"] == present
    assert "no block of colour" in step_info["parse_error"] or step_info["outcome"] == "out_of_range"


def test_a_collapse_is_minus_one_and_ends_the_episode():
    env = gym.make("TowerBuild-v0")
    scene = _scene(Cube(3.35, 0.0, 0.5, 1.0, GREEN), Cube(-1.75, 0.0, 0.5, 1.0, BLUE))
    env.reset(options={"scene": scene.to_dict()})
    _, reward, term, trunc, info = env.step("<answer>green, 85</answer>")  # overhangs the base by 0.85
    assert (reward, info["outcome"], term, trunc, info["success"]) == (-1.0, "unstable", True, False, False)
    assert info["stable_after"] is False


def test_a_cube_bridging_the_base_and_a_floor_cube_rests_on_both():
    env = gym.make("TowerBuild-v0")
    scene = _scene(Cube(-1.75, 0.0, 0.5, 1.0, GREEN), Cube(1.75, 0.0, 0.5, 1.0, BLUE))
    env.reset(options={"scene": scene.to_dict()})
    _, reward, term, _, info = env.step("<answer>green, 85</answer>")  # over the base and the blue cube
    assert (reward, info["outcome"], info["tower_height"]) == (1.0, "stable", 2)
    assert term and not info["success"] and info["movable_colours"] == []  # blue is covered now


def test_a_cube_set_on_the_floor_gains_nothing_and_stays_movable():
    env = gym.make("TowerBuild-v0")
    _, info = env.reset(seed=0)
    colour = info["movable_colours"][0]
    _, reward, term, _, info = env.step(f"<answer>{colour}, -600</answer>")
    assert (reward, info["outcome"], term, info["gain"]) == (0.0, "stable", False, 0)
    assert colour in info["movable_colours"]


def test_the_prompt_names_the_floor_cubes_and_says_how_to_answer():
    env = gym.make("TowerBuild-v0")
    obs, info = env.reset(seed=0)
    assert all(c in obs["prompt"] for c in info["movable_colours"]) and "<answer>COLOUR, X</answer>" in obs["prompt"]
    obs, *_, info = env.step(info["optimal_action"])
    assert obs["prompt"].startswith("The tower stood, and the reward was 1.00.")
    assert all(c in obs["prompt"] for c in info["movable_colours"])


def test_red_is_a_colour_a_build_cube_can_have():
    colours = {tower_build(np.random.default_rng(s)).cubes[i].color for s in range(40) for i in (1, 2)}
    assert RED in colours
