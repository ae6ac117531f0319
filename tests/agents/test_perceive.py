"""PerceiveSimulateAgent: near-ceiling on renders, legal answers on anything, runs on real photos."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.perceive import FALLBACK, PerceiveSimulateAgent
from envs.answers import parse_answer
from envs.prompts import LERER, PROMPTS, prompt_for

# Measured: at most 0.018 block edges on seeds 0..99 of both families at 256x256 (half a
# pixel is ~0.018 edges); the bound leaves room for another pybullet build's rasteriser.
OFFSET_TOL = 0.03

LERER_DIR = Path(
    os.environ.get("CUBEWORLD_LERER_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "lerer-dev"
)


@pytest.fixture(scope="module")
def agent() -> PerceiveSimulateAgent:
    return PerceiveSimulateAgent()


def _episodes(env_id: str, seeds, **kwargs):
    env = gym.make(env_id, **kwargs)
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            yield env, obs, info
    finally:
        env.close()


def test_binary_accuracy_and_offsets_on_renders(agent):
    correct, errors = [], []
    for env, obs, info in _episodes("TopBlockStability-v0", range(100)):
        scene = agent.perceive(obs["image"])  # no family hint: inferred from the pixels
        assert scene is not None and scene.family == "top_block"
        assert scene.n_blocks == info["n_blocks"]
        errors.append(abs(scene.offset - info["offset"]))
        # Without the "info" key, as a plain Gymnasium loop calls it: the prompt names the task.
        _, reward, *_ = env.step(agent.act([obs])[0])
        correct.append(reward == 1.0)
    assert np.mean(correct) >= 0.95
    assert max(errors) <= OFFSET_TOL, f"largest offset error {max(errors):.3f} block edges"


def test_side_block_offsets_and_heights(agent):
    for _, obs, info in _episodes("SideBlockXOnly-v0", range(30)):
        scene = agent.perceive(obs["image"])
        assert scene is not None and scene.family == "side_block"
        assert scene.n_blocks == info["n_blocks"]
        assert abs(scene.offset - info["offset"]) <= OFFSET_TOL
        truth = envs.Scene.from_dict(info["scene"])
        assert [c.z for c in scene.cubes] == [c.z for c in truth.cubes]


@pytest.mark.parametrize("env_id", ["TopBlockXOnly-v0", "SideBlockXOnly-v0", "SideBlockXY-v0"])
def test_placement_reward_near_optimal(agent, env_id):
    rewards = []
    for env, obs, info in _episodes(env_id, range(30)):
        answer = agent.act([{**obs, "info": {"task": info["task"], "answer_format": info["answer_format"]}}])[0]
        rewards.append(env.step(answer)[1])
    assert np.mean(rewards) >= 19.5  # optimal is 20; a 0.03-edge error costs 0.02
    assert min(rewards) >= 18.0


def test_other_image_size(agent):
    rewards = [env.step(agent.act([obs])[0])[1]
               for env, obs, _ in _episodes("SideBlockXY-v0", range(10), image_size=224)]
    assert np.mean(rewards) >= 19.0


@pytest.mark.parametrize(
    ("prompt", "fmt"),
    [*[(text, envs.TASKS[task][1]) for task, text in PROMPTS.items()],
     (prompt_for("side_block_xy", True), "xy"), (LERER, "binary"), ("", "binary"), ("anything?", "binary")],
)
def test_format_follows_prompt(agent, prompt, fmt):
    env = gym.make("SideBlockXOnly-v0")
    obs, _ = env.reset(seed=3)
    assert parse_answer(agent.act([{**obs, "prompt": prompt}])[0], fmt).legal


_rng = np.random.default_rng(0)
WEIRD = {
    "black": np.zeros((224, 224, 3), np.uint8),
    "white": np.full((256, 256, 3), 255, np.uint8),
    "noise224": _rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
    "noise256": _rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
    "patches": np.kron(_rng.integers(0, 256, (8, 8, 3)), np.ones((28, 28, 1))).astype(np.uint8),
    "tiny": np.zeros((3, 3, 3), np.uint8),
    "grey2d": np.full((64, 64), 90, np.uint8),
    "rgba": np.zeros((64, 80, 4), np.uint8),
    "float": _rng.random((100, 120, 3)),
    "nan": np.full((50, 50, 3), np.nan),
    "none": None,
    "text": "not an image",
}


@pytest.mark.parametrize("name", list(WEIRD))
def test_weird_images_get_legal_answers(agent, name):
    for task, prompt in PROMPTS.items():
        fmt = envs.TASKS[task][1]
        answer = agent.act([{"image": WEIRD[name], "prompt": prompt}])[0]
        assert parse_answer(answer, fmt).legal, (name, task, answer)
    if name in ("black", "none", "tiny", "text"):
        assert agent.perceive(WEIRD[name]) is None
        assert agent.act([{"image": WEIRD[name], "prompt": LERER}]) == [FALLBACK["binary"]]


def test_malformed_observations(agent):
    answers = agent.act([{}, {"prompt": 5}, {"image": None, "info": "x"}])
    assert all(parse_answer(a, "binary").legal for a in answers)
    assert agent.act([]) == []


@pytest.mark.skipif(not (LERER_DIR / "labels.csv").is_file(),
                    reason=f"no real photos at {LERER_DIR} (set CUBEWORLD_LERER_DIR)")
def test_real_photos_run_and_answer_legally(agent):
    from PIL import Image

    with open(LERER_DIR / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    correct = 0
    for row in rows:
        image = np.asarray(Image.open(LERER_DIR / "images" / row["image"]).convert("RGB"))
        answer = agent.act([{"image": image, "prompt": LERER}])[0]
        parsed = parse_answer(answer, "binary")
        assert parsed.legal, (row["image"], answer)
        correct += parsed.value == ("No" if row["falls"] == "1" else "Yes")
    # Reported, not asserted: a heuristic on an unknown camera (humans score 0.725 here).
    print(f"\nPerceiveSimulateAgent on {len(rows)} real photos: accuracy {correct / len(rows):.3f}")


@pytest.mark.parametrize("env_id", ["TopBlockXOnly-Retry-v0", "SideBlockXY-Retry-v0"])
def test_retry_attempts_are_answered_from_the_first_image(env_id):
    env = gym.make(env_id)
    agent = PerceiveSimulateAgent()
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        first = agent.act([obs])[0]
        obs, *_ = env.step("<answer>abc</answer>")
        assert agent.act([obs]) == [first]  # with no info: the protocol is read from the prompt


@pytest.mark.parametrize("env_id", ["SideBlockXOnly-Sequential-v0", "SideBlockXY-Sequential-v0"])
def test_sequential_moves_are_answered_from_where_the_cubes_are_now(env_id):
    env = gym.make(env_id)
    agent = PerceiveSimulateAgent()
    solved = 0
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        miss = info["optimal_action"].replace("<answer>", "").replace("</answer>", "").split(", ")
        miss[0] = str(int(miss[0]) + 30)  # stands on the tower, 0.3 edges off: not yet a success
        obs, _, term, _, info = env.step("<answer>" + ", ".join(miss) + "</answer>")
        assert info["outcome"] == "stable" and not term
        obs, reward, term, _, info = env.step(agent.act([obs])[0])
        solved += info["success"]
    assert solved == 10


@pytest.mark.parametrize("sizes", [None, (0.6, 1.2)])
def test_tower_build_moves_build_the_tower(sizes):
    env = gym.make("TowerBuild-v0", **({"sizes": sizes} if sizes else {}))
    agent = PerceiveSimulateAgent()
    successes = 0
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(agent.act([obs])[0])
            done = term or trunc
        successes += info["success"]
    assert successes == 10
