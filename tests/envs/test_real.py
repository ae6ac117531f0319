"""Real photos: the dataset reader and RealTowerStability-v0 on fixture images (and lerer-dev if present)."""

from __future__ import annotations

import csv
import os
import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import envs
from agents import ConstantAgent, OracleAgent
from envs.prompts import LERER
from envs.real import RealTowerDataset, RealTowerEnv, episode_photo, fit_square
from evaluation import evaluate

LERER_DIR = Path(
    os.environ.get("CUBEWORLD_LERER_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "lerer-dev"
)
needs_lerer = pytest.mark.skipif(not (LERER_DIR / "labels.csv").is_file(),
                                 reason=f"no real photos at {LERER_DIR} (set CUBEWORLD_LERER_DIR)")

# name, (width, height), n_blocks, falls; sizes include non-square and the env's own 256.
FIXTURE = [
    ("a.png", (224, 224), 2, 0),
    ("b.png", (300, 200), 3, 1),
    ("c.png", (120, 180), 4, 1),
    ("d.jpg", (64, 64), 2, 0),
    ("e.png", (256, 256), 3, 0),
    ("f.png", (90, 40), 4, 1),
]
# Participant verdicts per photo (1 = falls); "" = no response.
RESPONSES = [
    ["0", "0", "1", ""],
    ["1", "1", "0", "1"],
    ["1", "0", "1", "1"],
    ["0", "0", "0", "1"],
    ["1", "0", "0", "0"],
    ["1", "1", "1", "0"],
]


def write_dataset(root: Path, rows=FIXTURE, responses=RESPONSES, p_falls: bool = True) -> Path:
    """A small dataset folder in the lerer-dev layout: synthetic towers on a pale background."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (name, (w, h), n, _) in enumerate(rows):
        a = np.full((h, w, 3), 235, np.uint8)
        edge = max(4, min(w, h) // 6)
        for k in range(n):  # a stack of coloured squares, the top one shifted
            x0 = w // 2 - edge // 2 + (edge // 2 if k == n - 1 and i % 2 else 0)
            y1 = h - 2 - k * edge
            a[max(0, y1 - edge):y1, max(0, x0):x0 + edge] = rng.integers(0, 255, 3)
        Image.fromarray(a).save(root / "images" / name)
    with (root / "labels.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "n_blocks", "colors_top_to_bottom", "falls"] + (["human_p_falls"] if p_falls else []))
        for (name, _, n, falls), resp in zip(rows, responses or [[]] * len(rows)):
            given = [float(v) for v in resp if v != ""]
            extra = [f"{np.mean(given):.4f}"] if p_falls else []
            wr.writerow([name, n, ";".join(["red"] * n), falls] + extra)
    if responses is not None:
        with (root / "human_responses.csv").open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["image"] + [f"participant_{j}" for j in range(len(responses[0]))])
            for (name, *_), resp in zip(rows, responses):
                wr.writerow([name] + resp)
    return root


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "photos")


# -- the reader ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [256, 64])
def test_reader_gives_square_uint8_images_of_any_source_size(data_dir, size):
    ds = RealTowerDataset(data_dir, image_size=size)
    assert [p.name for p in ds.photos] == [r[0] for r in FIXTURE]
    for i in range(len(ds)):
        image = ds.image(i)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(ds.falls, [r[3] for r in FIXTURE])
    np.testing.assert_array_equal(ds.n_blocks, [r[2] for r in FIXTURE])
    assert ds.photos[1].falls and not ds.photos[1].stable and ds.photos[0].colors == ("red", "red")


def test_same_size_passes_through_and_square_is_resized_not_padded(data_dir):
    ds = RealTowerDataset(data_dir, image_size=256)
    original = np.asarray(Image.open(data_dir / "images" / "e.png").convert("RGB"))
    np.testing.assert_array_equal(ds.image(ds.index_of("e.png")), original)
    a = ds.image(ds.index_of("a.png"))  # 224 -> 256: content reaches every border, as in the source
    src = np.asarray(Image.open(data_dir / "images" / "a.png").convert("RGB"))
    assert a.shape == (256, 256, 3) and (a[0] == src[0, 0]).all() and (a[:, 0] == src[0, 0]).all()


def test_non_square_is_letterboxed_with_the_border_colour():
    # 100 x 50 (w x h): left half red, right half blue, a grey frame: scaled to 64 x 32, padded above and below.
    a = np.zeros((50, 100, 3), np.uint8)
    a[:, :50], a[:, 50:] = (200, 0, 0), (0, 0, 200)
    a[0, :], a[-1, :], a[:, 0], a[:, -1] = 128, 128, 128, 128
    out = fit_square(a, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == 128).all() and (out[48:] == 128).all()  # padding = median border colour
    assert out[32, 16, 0] > 150 and out[32, 48, 2] > 150  # content kept, not cropped: both halves visible
    tall = fit_square(np.full((90, 30, 3), 7, np.uint8), 60)  # portrait: padded left and right
    assert tall.shape == (60, 60, 3) and (tall == 7).all()
    grey = fit_square(np.full((10, 20), 9, np.uint8), 16)
    assert grey.shape == (16, 16, 3) and (grey == 9).all()


def test_human_responses_are_read_with_missing_cells_as_nan(data_dir):
    ds = RealTowerDataset(data_dir)
    assert ds.participants == ("participant_0", "participant_1", "participant_2", "participant_3")
    assert ds.human_responses.shape == (6, 4) and np.isnan(ds.human_responses[0, 3])
    assert ds.human_responses[1].tolist() == [1, 1, 0, 1]
    assert ds.photos[0].human_p_falls == pytest.approx(1 / 3, abs=1e-4)


def test_p_falls_comes_from_responses_when_labels_lack_it(tmp_path):
    ds = RealTowerDataset(write_dataset(tmp_path / "d", p_falls=False))
    assert [p.human_p_falls for p in ds.photos] == pytest.approx([1 / 3, 0.75, 0.75, 0.25, 0.25, 0.75])
    bare = RealTowerDataset(write_dataset(tmp_path / "e", responses=None, p_falls=False))
    assert bare.human_responses is None and bare.participants == () and bare.photos[0].human_p_falls is None


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("breakage, error, match", [
    (lambda d: (d / "labels.csv").unlink(), FileNotFoundError, "labels.csv"),
    (lambda d: (d / "images" / "c.png").unlink(), FileNotFoundError, r"c\.png"),
    (lambda d: _edit(d / "labels.csv", "n_blocks", "blocks"), ValueError, r"lacks column\(s\) \['n_blocks'\]"),
    (lambda d: _edit(d / "labels.csv", "a.png,2,red;red,0", "a.png,2,red;red,2"), ValueError, "falls must be one of"),
    (lambda d: _edit(d / "labels.csv", "b.png", "a.png"), ValueError, "more than once"),
    (lambda d: _edit(d / "human_responses.csv", "b.png", "zz.png"), ValueError, "zz.png"),
    (lambda d: _edit(d / "human_responses.csv", "1,1,0,1", "1,1,7,1"), ValueError, "participant_2"),
])
def test_bad_folders_get_errors_that_name_the_problem(data_dir, breakage, error, match):
    breakage(data_dir)
    with pytest.raises(error, match=match):
        RealTowerDataset(data_dir)


def test_missing_folder_and_images_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.*does not exist.*labels.csv"):
        RealTowerDataset(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "labels.csv").write_text("image,n_blocks,falls\n")
    with pytest.raises(FileNotFoundError, match="images"):
        RealTowerDataset(tmp_path / "x")


def test_unreadable_photo_is_a_clear_error_at_reset(data_dir):
    (data_dir / "images" / "a.png").write_bytes(b"not a png")
    env = RealTowerEnv(data_dir)
    with pytest.raises(ValueError, match=r"a\.png.*replace the file"):
        env.reset(options={"image": "a.png"})


# -- the environment -------------------------------------------------------------------
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env_passes_clean(data_dir, render_mode):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make("RealTowerStability-v0", data_dir=data_dir, render_mode=render_mode).unwrapped)
    assert not [str(w.message) for w in caught]


def test_registration_is_separate_from_the_synthetic_suite(data_dir):
    assert envs.REAL_ENV_IDS == ("RealTowerStability-v0",)
    assert "RealTowerStability-v0" not in envs.ENV_IDS
    with pytest.raises(ValueError, match="data_dir="):
        gym.make("RealTowerStability-v0")
    assert gym.make("envs:RealTowerStability-v0", data_dir=data_dir).unwrapped.task == "real_tower_stability"


@pytest.mark.parametrize("answer, stable, outcome, reward", [
    ("<answer>Yes</answer>", True, "correct", 1.0),
    ("<answer>No</answer>", True, "incorrect", 0.0),
    ("<answer>no.</answer>", False, "correct", 1.0),
    ("<answer>Yes</answer>", False, "incorrect", 0.0),
    ("it will fall", False, "unparseable", -1.0),
    ("<answer>maybe</answer>\x00\u2603", True, "unparseable", -1.0),
])
def test_step_rewards_against_the_label(data_dir, answer, stable, outcome, reward):
    env = gym.make("RealTowerStability-v0", data_dir=data_dir)
    obs, info = env.reset(options={"image": "a.png" if stable else "b.png"})
    assert obs["prompt"] == LERER and obs["image"].shape == (256, 256, 3)
    assert info["stable_initially"] is stable and info["answer_format"] == "binary" and info["offset"] is None
    assert info["optimal_action"] == f"<answer>{'Yes' if stable else 'No'}</answer>"
    _, r, terminated, truncated, info2 = env.step(answer)
    assert (r, info2["outcome"], terminated, truncated) == (reward, outcome, True, False)
    assert info2["image"] == info["image"] and info2["n_blocks"] == info["n_blocks"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(answer)


def test_seeded_order_covers_every_photo_once_per_pass_and_is_deterministic(data_dir):
    env = RealTowerEnv(data_dir)
    n = len(env.dataset)
    first = [env.reset(seed=s)[1]["image"] for s in range(n)]
    assert sorted(first) == sorted(r[0] for r in FIXTURE)
    again = [RealTowerEnv(data_dir).reset(seed=s)[1]["image"] for s in range(n)]
    assert again == first
    second = [env.reset(seed=s)[1]["image"] for s in range(n, 2 * n)]
    assert sorted(second) == sorted(first) and second != first  # a new pass, a new order
    env.reset(seed=3)
    continued = [env.reset()[1] for _ in range(2)]
    assert [i["episode"] for i in continued] == [4, 5] and [i["image"] for i in continued] == first[4:6]
    plain = RealTowerEnv(data_dir, shuffle=False)
    assert [plain.reset(seed=s)[1]["image"] for s in range(n + 1)] == [r[0] for r in FIXTURE] + ["a.png"]
    assert [episode_photo(k, 5, shuffle=False) for k in (0, 4, 5, 12)] == [0, 4, 0, 2]
    with pytest.raises(ValueError, match="k >= 0"):
        episode_photo(-1, 5)


def test_same_seed_same_image_and_render_and_pickle(data_dir):
    env = RealTowerEnv(data_dir, render_mode="rgb_array", image_size=64)
    obs, info = env.reset(seed=2)
    np.testing.assert_array_equal(env.render(), obs["image"])
    clone = pickle.loads(pickle.dumps(env))
    assert clone.step("<answer>Yes</answer>")[4]["image"] == info["image"]
    np.testing.assert_array_equal(RealTowerEnv(data_dir, image_size=64).reset(seed=2)[0]["image"], obs["image"])
    with pytest.raises(KeyError, match="no photo 'zz.png'"):
        env.reset(options={"image": "zz.png"})


def test_evaluate_runs_unchanged_on_the_real_env(data_dir):
    kwargs = {"data_dir": str(data_dir)}
    oracle = evaluate(OracleAgent(), "RealTowerStability-v0", 6, env_kwargs=kwargs, batch_size=4)
    assert oracle.accuracy == 1.0 and oracle.mean_reward == 1.0
    yes = evaluate(ConstantAgent("<answer>Yes</answer>"), "RealTowerStability-v0", 6, env_kwargs=kwargs)
    assert yes.accuracy == pytest.approx(3 / 6) and yes.outcome_counts == {"correct": 3, "incorrect": 3}


# -- the real photos (skipped without them) ----------------------------------------------
@needs_lerer
def test_lerer_dev_reads_as_documented():
    ds = RealTowerDataset(LERER_DIR, image_size=224)
    assert len(ds) == 29 and ds.human_responses.shape == (29, 107)
    assert int(ds.falls.sum()) == 14 and sorted(set(ds.n_blocks.tolist())) == [2, 3, 4]
    p = np.array([x.human_p_falls for x in ds.photos])
    assert float(np.mean(1 - np.abs(p - ds.falls))) == pytest.approx(0.725, abs=1e-3)
    np.testing.assert_allclose(np.nanmean(ds.human_responses, 1), p, atol=1e-4)
    raw = np.asarray(Image.open(ds.photos[0].path).convert("RGB"))
    np.testing.assert_array_equal(ds.image(0), raw)  # 224 in, 224 out: untouched


@needs_lerer
def test_lerer_dev_env_passes_check_env_and_the_oracle_is_perfect():
    check_env(gym.make("RealTowerStability-v0", data_dir=LERER_DIR).unwrapped)
    result = evaluate(OracleAgent(), "RealTowerStability-v0", 29, env_kwargs={"data_dir": LERER_DIR})
    assert result.accuracy == 1.0
