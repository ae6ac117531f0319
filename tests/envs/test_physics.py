"""The physics verdict against the centre-of-mass rule, and the scene generators."""

import numpy as np
import pytest

from envs.physics import World
from envs.scenes import Cube, Scene, side_block, top_block

from .com_rule import com_margin, random_stack

NEAR = 0.02  # block edges: scenes this close to the threshold are reported, not asserted


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


def _verdicts(world, scenes):
    out = []
    for scene in scenes:
        world.load(scene)
        out.append(world.settle())
    return out


def test_verdict_matches_centre_of_mass_rule(world, capsys):
    rng = np.random.default_rng(1234)
    scenes = [random_stack(rng, int(rng.integers(2, 5))) if k % 2 else top_block(rng) for k in range(400)]
    margins = [com_margin([c.x for c in s.cubes]) for s in scenes]
    verdicts = _verdicts(world, scenes)
    far = [(m > 0) == v.stable for m, v in zip(margins, verdicts) if abs(m) >= NEAR]
    near = [(m > 0) == v.stable for m, v in zip(margins, verdicts) if abs(m) < NEAR]
    assert len(far) >= 300
    assert all(far), f"{len(far) - sum(far)} of {len(far)} scenes disagree with the COM rule"
    with capsys.disabled():
        print(f"\nCOM-rule agreement: {sum(far)}/{len(far)} beyond {NEAR} edges of the threshold, "
              f"{sum(near)}/{len(near)} within it")


@pytest.mark.parametrize("n", [2, 3, 4])
def test_threshold_lies_within_a_hundredth_of_half_an_edge(world, n):
    def stable(offset):
        cubes = tuple(Cube(offset if i == n - 1 else 0.0, 0.0, i + 0.5) for i in range(n))
        world.load(Scene("top_block", cubes, n - 1))
        return world.settle().stable

    assert stable(0.49) and stable(-0.49)
    assert not stable(0.51) and not stable(-0.51)


def test_unstable_verdict_stops_early_and_stable_comes_to_rest(world):
    cubes = (Cube(0, 0, 0.5), Cube(0.8, 0, 1.5))
    world.load(Scene("top_block", cubes, 1))
    fall = world.settle()
    assert (fall.stable, fall.status) == (False, "moved") and fall.steps < 120
    world.load(Scene("top_block", (Cube(0, 0, 0.5), Cube(0.2, 0, 1.5)), 1))
    rest = world.settle()
    assert (rest.stable, rest.status) == (True, "at_rest") and rest.steps < 60
    assert rest.max_displacement < 0.01


def test_simulation_is_deterministic_whatever_ran_before():
    scene = Scene("top_block", (Cube(0, 0, 0.5), Cube(0, 0, 1.5), Cube(0.55, 0, 2.5)), 2)
    a, b = World(), World()
    a.load(scene)
    a.settle()
    b.load(Scene("top_block", (Cube(0, 0, 0.5), Cube(0.9, 0, 1.5)), 1))
    b.settle(stop_on_motion=False)
    runs = []
    for w in (a, b):
        w.load(scene)
        runs.append((w.settle(), w.poses()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1][0], runs[1][1][0])


def test_render_shape_and_room(world):
    world.load(top_block(np.random.default_rng(0)))
    img = world.render(64, 48)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    # The room is grey: the top-left corner is a grey wall pixel.
    r, g, b = img[0, 0].astype(int)
    assert r == g == b


def test_generators_are_seeded_and_balanced():
    def draw(seed):
        return top_block(np.random.default_rng(seed))

    assert draw(3) == draw(3) and draw(3) != draw(4)
    rng = np.random.default_rng(0)
    offsets = np.array([top_block(rng).offset for _ in range(4000)])
    assert 0.45 < np.mean(np.abs(offsets) < 0.5) < 0.55  # about half the towers are stable
    assert 0.45 < np.mean(offsets < 0) < 0.55  # left and right alike
    sides = [side_block(rng) for _ in range(500)]
    assert all(1.5 <= abs(s.offset) < 3.5 and 1 <= s.n_blocks <= 3 for s in sides)
    assert all(s.cubes[s.target].z == 0.5 for s in sides)


def test_generator_ranges_are_validated():
    with pytest.raises(ValueError, match="n_blocks"):
        top_block(np.random.default_rng(0), (1, 4))
    with pytest.raises(ValueError, match="n_blocks"):
        side_block(np.random.default_rng(0), (3, 2))


def test_scene_dict_round_trip_and_errors():
    scene = side_block(np.random.default_rng(5))
    assert Scene.from_dict(scene.to_dict()) == scene
    with pytest.raises(ValueError, match="lacks keys"):
        Scene.from_dict({"family": "top_block"})
    with pytest.raises(ValueError, match="family"):
        Scene.from_dict({**scene.to_dict(), "family": "no_such_family"})


def test_resting_height():
    scene = side_block(np.random.default_rng(0), (2, 2))
    assert scene.resting_z(0.3) == pytest.approx(2.5)
    assert scene.resting_z(2.5, below=4.0) == pytest.approx(0.5)  # beside the tower: the floor
    assert scene.resting_z(1.0) == pytest.approx(0.5)  # touching the tower's side is no support


def test_run_to_rest_stops_where_settle_without_stopping_on_motion_stops():
    from envs.physics import World
    from envs.scenes import top_block

    for seed in range(6):  # stable and falling towers
        scene = top_block(np.random.default_rng(seed), (2, 4))
        a, b = World(), World()
        a.load(scene)
        b.load(scene)
        verdict = a.settle(stop_on_motion=False)
        assert b.run_to_rest() == verdict.steps
        for x, y in zip(a.poses(), b.poses()):
            np.testing.assert_array_equal(x, y)
