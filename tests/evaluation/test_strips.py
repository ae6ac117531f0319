"""Trajectory strips: shape, determinism, the images in place, captions drawn, bad input; a real episode."""

import numpy as np
import pytest
from PIL import Image

import envs  # noqa: F401  (registers the ids)
from evaluation.strips import record_episode, trajectory_strip


def _turns(n, size=32):
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "prompt": f"prompt {k}",
             "answer": f"<answer>{10 * k}</answer>", "reward": -2.0 + k, "outcome": "unstable"} for k in range(n)]


@pytest.mark.parametrize("n,size,gap", [(1, 32, 8), (3, 32, 8), (2, 64, 0)])
def test_shape_and_dtype(n, size, gap):
    strip = trajectory_strip(_turns(n, size), image_size=size, gap=gap)
    assert strip.dtype == np.uint8 and strip.ndim == 3 and strip.shape[2] == 3
    assert strip.shape[1] == n * size + (n + 1) * gap and strip.shape[0] > size + 2 * gap


def test_images_sit_in_their_panels_and_captions_are_drawn():
    turns = _turns(2)
    strip = trajectory_strip(turns, image_size=32, gap=8)
    assert np.array_equal(strip[8:40, 8:40], turns[0]["image"])
    assert np.array_equal(strip[8:40, 48:80], turns[1]["image"])
    assert (strip[48:] < 200).any()  # dark text under the images
    assert np.array_equal(strip, trajectory_strip(turns, image_size=32, gap=8))  # deterministic


def test_final_image_adds_a_panel_and_images_are_scaled_to_fit():
    turns = _turns(2, size=16)
    strip = trajectory_strip(turns, image_size=32, gap=4, final_image=np.zeros((8, 16, 3), np.uint8))
    assert strip.shape[1] == 3 * 32 + 4 * 4
    panel = strip[4:36, 4 + 2 * 36:4 + 2 * 36 + 32]  # the 8 x 16 black result, scaled to 16 x 32 and centred
    assert (panel[8:24] == 0).all() and (panel[:8] == 255).all() and (panel[24:] == 255).all()


def test_any_answer_text_is_drawn_within_its_line_budget():
    wild = [{**_turns(1)[0], "answer": "é∑ " * 500 + "x" * 400 + "\n\t<answer>1</answer>"}]
    short = trajectory_strip(_turns(1), image_size=32, max_answer_lines=2)
    long = trajectory_strip(wild, image_size=32, max_answer_lines=2)
    assert long.shape == short.shape  # the caption grows to max_answer_lines at most


@pytest.mark.parametrize("turns,match", [
    ([], "turns is empty"),
    ([{"image": np.zeros((4, 4, 3), np.uint8), "prompt": "", "answer": ""}], r"lacks \['reward', 'outcome'\]"),
    ([{**_turns(1)[0], "image": np.zeros((4, 4), np.uint8)}], r"\(H, W, 3\) uint8"),
    ([{**_turns(1)[0], "image": np.zeros((4, 4, 3), np.float32)}], r"\(H, W, 3\) uint8"),
])
def test_bad_input(turns, match):
    with pytest.raises(ValueError, match=match):
        trajectory_strip(turns)


def test_a_random_retry_episode_as_a_png(tmp_path):
    import gymnasium as gym

    from agents import RandomAgent

    env = gym.make("TopBlockXOnly-Retry-v0", render_mode="rgb_array")
    turns, final = record_episode(env, RandomAgent(seed=0), seed=0)
    env.close()
    k = env.unwrapped.max_turns
    assert 1 <= len(turns) <= k and final.shape == turns[0]["image"].shape
    assert turns[0]["prompt"] != turns[-1]["prompt"] or len(turns) == 1
    path = tmp_path / "strip.png"
    Image.fromarray(trajectory_strip(turns, image_size=128, final_image=final)).save(path)
    with Image.open(path) as png:
        n = len(turns) + 1
        assert png.mode == "RGB" and png.width == n * 128 + (n + 1) * 8 and png.height > 128 + 16
