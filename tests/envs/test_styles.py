"""Rendering styles and domain randomisation (DESIGN.md section 9, envs.styles): the looks change
pixels only; every id keeps its contract (check_env, bitwise determinism per seed) under each look."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.answers import sample_legal_answer
from envs.look_render import LookRenderer, project, wood_texture
from envs.scenes import COLOR_NAMES
from envs.styles import (
    LERER,
    PLAIN,
    RANDOMISE_DEFAULTS,
    Styler,
    check_randomise,
    derive_rng,
    draw_look,
    paint,
    style_look,
)
from envs.tower_env import ALL_TASKS
from envs.worlds import FAMILY_SPECS

ALL_IDS = envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.WORLD_ENV_IDS
# (style, randomise) beyond the default plain look.
LOOKS = [("lerer", False), ("lerer", True), ("plain", True)]


@pytest.mark.parametrize("style,randomise", LOOKS)
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_under_every_look(env_id, style, randomise):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id, render_mode="rgb_array", image_size=48, style=style,
                           randomise=randomise).unwrapped)
    assert not [str(w.message) for w in caught]


@pytest.mark.parametrize("style,randomise", LOOKS)
@pytest.mark.parametrize("env_id", ["SideBlockXY-Retry-v0", "TowerStability-v0", "ShapeStacksStability-v0"])
def test_same_seed_same_images_bitwise(env_id, style, randomise):
    kwargs = dict(render_mode="rgb_array", image_size=64, style=style, randomise=randomise)
    a, b = gym.make(env_id, **kwargs), gym.make(env_id, **kwargs)
    obs_a, info_a = a.reset(seed=5)
    b.reset(seed=17)  # another episode first: nothing may carry over
    obs_b, info_b = b.reset(seed=5)
    assert obs_a["image"].tobytes() == obs_b["image"].tobytes() and info_a == info_b
    answer = info_a["optimal_action"]
    step_a, step_b = a.step(answer), b.step(answer)
    assert step_a[0]["image"].tobytes() == step_b[0]["image"].tobytes() and step_a[1:] == step_b[1:]
    assert a.render().tobytes() == b.render().tobytes()
    replay, _ = a.reset(seed=5, options={"scene": info_a["scene"]})  # the same seed replays the same look
    assert replay["image"].tobytes() == obs_a["image"].tobytes()
    assert not np.array_equal(obs_a["image"], gym.make(env_id, image_size=64).reset(seed=5)[0]["image"])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_randomisation_changes_pixels_never_the_scene_verdict_or_reward(env_id):
    """One scene rendered under many draws: the images differ, ``info`` and the reward do not; and a
    randomised env draws the same scenes as a plain one, seeded or not."""
    plain = gym.make(env_id, image_size=32)
    styled = gym.make(env_id, image_size=32, style="lerer", randomise=True)
    _, info = plain.reset(seed=3)
    rng = np.random.default_rng(0)
    answers = [info["optimal_action"], sample_legal_answer(plain.unwrapped.answer_format, rng)]
    truth = [plain.step(a)[1:] for a in answers[:1]]
    plain.reset(seed=3)
    truth += [plain.step(answers[1])[1:]]
    images = set()
    for draw in range(6):
        obs, styled_info = styled.reset(seed=100 + draw, options={"scene": info["scene"]})
        assert styled_info == info
        images.add(obs["image"].tobytes())
        for k, answer in enumerate(answers):
            if k:
                styled.reset(seed=100 + draw, options={"scene": info["scene"]})
            assert styled.step(answer)[1:] == truth[k]
    assert len(images) == 6
    # Unseeded resets continue the env's stream: the same scenes with and without randomisation.
    plain.reset(seed=9)
    styled.reset(seed=9)
    for _ in range(3):
        assert plain.reset()[1]["scene"] == styled.reset()[1]["scene"]


def test_plain_without_randomisation_is_the_physics_worlds_own_render():
    env = gym.make("TowerStability-v0", style="plain", randomise=False).unwrapped
    obs, _ = env.reset(seed=4)
    assert env.styler.plain and env.styler.look is PLAIN
    default = gym.make("TowerStability-v0").unwrapped
    assert default.reset(seed=4)[0]["image"].tobytes() == obs["image"].tobytes()
    world = FAMILY_SPECS["stability"].make_world()
    from envs.scenes import Scene

    world.load(Scene.from_dict(env._episode_info()["scene"]))
    assert world.render(256, 256).tobytes() == obs["image"].tobytes()


def test_pickled_styled_env_renders_the_same():
    env = gym.make("SideBlockXY-v0", render_mode="rgb_array", image_size=64, style="lerer", randomise=True)
    obs, info = env.reset(seed=2)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.unwrapped.styler.look == env.unwrapped.styler.look
    assert copy.step(info["optimal_action"])[1:] == env.step(info["optimal_action"])[1:]
    assert copy.render().tobytes() == env.render().tobytes()


def test_randomise_amounts_and_errors():
    assert check_randomise(False) == check_randomise(None) == {}
    assert check_randomise(True) == RANDOMISE_DEFAULTS
    assert check_randomise({"noise": True, "blur": 0.5, "fov": 0, "jpeg": False}) == {"noise": 4.0, "blur": 0.5}
    with pytest.raises(ValueError, match="unknown randomise key 'nosie'.*'noise'"):
        check_randomise({"nosie": 1})
    for bad in ({"noise": -1}, {"noise": float("nan")}, {"noise": "a lot"}):
        with pytest.raises(ValueError, match=r"randomise\['noise'\] must be a finite number >= 0"):
            check_randomise(bad)
    with pytest.raises(ValueError, match="randomise must be True, False or a dict"):
        gym.make("TopBlockStability-v0", randomise="yes")
    with pytest.raises(ValueError, match="unknown style 'photo'; expected one of \\['lerer', 'plain'\\]"):
        gym.make("TopBlockStability-v0", style="photo")


def test_a_dict_randomises_only_what_it_names():
    rng = np.random.default_rng
    only_noise = draw_look(LERER, {"noise": 4.0}, rng(1))
    assert LERER.noise <= only_noise.noise <= LERER.noise + 4.0 and only_noise.noise != LERER.noise
    same = {"eye", "target", "fov", "light_direction", "light_colour", "floor_rgb", "wood", "shadow", "blur", "jpeg"}
    assert all(getattr(only_noise, k) == getattr(LERER, k) for k in same)
    # Turning a key on leaves the other keys' draws as they were.
    both = draw_look(LERER, {"noise": 4.0, "fov": 2.0}, rng(1))
    assert both.noise == only_noise.noise and both.fov != LERER.fov
    look = draw_look(LERER, RANDOMISE_DEFAULTS, rng(2))
    assert abs(look.fov - LERER.fov) <= 2.0 and 45 <= look.jpeg <= 85 and 0 <= look.wood <= 1


def test_derive_rng_leaves_the_env_generator_alone():
    gen = np.random.default_rng(11)
    state = gen.bit_generator.state
    first = derive_rng(gen).random(4)
    assert gen.bit_generator.state == state and np.array_equal(derive_rng(gen).random(4), first)
    gen.random()
    assert not np.array_equal(derive_rng(gen).random(4), first)


def test_lerer_camera_frames_every_family_and_paints_colours_apart():
    renderer = LookRenderer()
    from envs.look_render import _corners, look_matrices

    for task, (family, _, block_range) in ALL_TASKS.items():
        view, proj = look_matrices(style_look("lerer", family), 256, 256)
        rng = np.random.default_rng(0)
        for _ in range(30):
            scene = FAMILY_SPECS[family].generate(rng, block_range)
            corners = np.concatenate([_corners(c) for c in scene.cubes])
            px = project(corners, view, proj, 256, 256)
            assert (px >= 0).all() and (px <= 256).all(), task
    renderer.close()
    paints = {name: paint(rgb, LERER, 0) for rgb, name in COLOR_NAMES.items()}
    assert len({tuple(round(v, 3) for v in rgb) for rgb in paints.values()}) == len(paints)
    red, green, blue, yellow = (np.array(paints[k]) for k in ("red", "green", "blue", "yellow"))
    assert red.argmax() == 0 and green.argmax() == 1 and blue.argmax() == 2 and yellow[2] < 0.5 * yellow[:2].min()


def test_wood_texture_is_grain_on_white():
    plain, grain = wood_texture(0, 0.0), wood_texture(0, 0.3)
    assert plain.shape == (128, 128, 3) and plain.dtype == np.uint8 and (plain == 255).all()
    assert grain.min() >= round(255 * 0.7) - 1 and grain.std() > 3 and not np.array_equal(grain, wood_texture(1, 0.3))


def test_styler_renders_at_any_size_and_closes():
    styler = Styler("lerer")
    env = gym.make("TopBlockStability-v0").unwrapped
    env.reset(seed=0)
    for size in (16, 100):
        image = styler.render(env._world, size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    styler.close()
    assert styler.render(env._world, 16).shape == (16, 16, 3)  # reconnects


def test_demo_writes_a_grid_of_the_style(tmp_path):
    from PIL import Image

    from cubeworld.demo import grid_name, run_demo

    ids = ("TopBlockStability-v0", "TowerStability-v0")
    run_demo(tmp_path, n_episodes=1, n_images=3, env_ids=ids, style="lerer", randomise=True)
    with Image.open(tmp_path / grid_name("lerer", True)) as grid:
        assert grid.size == (3 * 128, 2 * 128) and grid.mode == "RGB"
    assert grid_name() == "grid_plain.png"


def test_look_renderer_pickles_without_its_client():
    env = gym.make("TopBlockStability-v0").unwrapped
    env.reset(seed=1)
    renderer = LookRenderer()
    image = renderer.render(env._world.scene_now(), LERER, 32, 32)
    copy = pickle.loads(pickle.dumps(renderer))
    assert copy.render(env._world.scene_now(), LERER, 32, 32).tobytes() == image.tobytes()


def test_a_frame_does_not_depend_on_the_frames_before(monkeypatch):
    """Bodies removed, textures kept, the client emptied every RESET_EVERY frames: the same pixels."""
    import envs.look_render as lr

    monkeypatch.setattr(lr, "RESET_EVERY", 3)
    env = gym.make("TowerStability-v0").unwrapped
    scenes = []
    for seed in (0, 1):
        env.reset(seed=seed)
        scenes.append(env._world.scene_now())
    renderer = LookRenderer()
    looks = [LERER, draw_look(LERER, RANDOMISE_DEFAULTS, np.random.default_rng(5)),
             draw_look(PLAIN, RANDOMISE_DEFAULTS, np.random.default_rng(6))]
    first = [renderer.render(scenes[0], look, 48, 48) for look in looks]
    for k in range(7):
        renderer.render(scenes[k % 2], looks[k % 3], 48, 48)
        assert renderer.render(scenes[0], looks[k % 3], 48, 48).tobytes() == first[k % 3].tobytes()
    assert LookRenderer().render(scenes[0], looks[1], 48, 48).tobytes() == first[1].tobytes()
