"""The tiny-base recipe (training.pretrain): data, a reduced-budget build, determinism, and the shipped base."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from agents import tiny_base  # noqa: E402
from envs.render import camera_matrices  # noqa: E402
from envs.scenes import COLOR_NAMES  # noqa: E402
from training import pretrain  # noqa: E402

SHIPPED = tiny_base.shipped_path()


def _pixel(x, y, z, size=256):
    view, proj = camera_matrices(size, size)
    clip = proj @ view @ np.array([x, y, z, 1.0])
    ndc = clip[:3] / clip[3]
    return (ndc[0] + 1) / 2 * size, (1 - ndc[1]) / 2 * size


def test_generic_scenes_are_varied_valid_and_in_range():
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        scene = pretrain.generic_scene(rng)
        cubes = scene.cubes
        counts.add(len(cubes))
        assert 1 <= len(cubes) <= 5
        assert len({c.color for c in cubes}) == len(cubes)
        assert all(c.color in COLOR_NAMES for c in cubes)
        assert all(-4.5 < c.x < 4.5 and c.y == 0 for c in cubes)
        assert not any(a.overlaps(b) for i, a in enumerate(cubes) for b in cubes[i + 1:])
        for c in cubes:  # each cube rests on the floor or on the cube below it
            assert c.z == 0.5 or any(abs(o.z - (c.z - 1)) < 1e-9 and abs(o.x - c.x) < 1 for o in cubes)
    assert counts == {1, 2, 3, 4, 5}


def test_bbox_contains_the_cube_centre_and_fits_the_image():
    rng = np.random.default_rng(1)
    for _ in range(50):
        for cube in pretrain.generic_scene(rng).cubes:
            x1, y1, x2, y2 = pretrain.cube_bbox(cube)
            u, v = _pixel(cube.x, cube.y, cube.z)
            assert 0 <= x1 < u < x2 <= 255 and 0 <= y1 < v < y2 <= 255
            assert 20 < x2 - x1 < 40 and 20 < y2 - y1 < 40  # one block edge is ~27 px at the tower


def test_perception_examples_answer_in_format():
    rng = np.random.default_rng(2)
    scene = pretrain.generic_scene(rng)
    image = np.zeros((256, 256, 3), np.uint8)
    q, _, a, kind = pretrain.perception_example(scene, image, rng, "count")
    assert (q, a, kind) == (pretrain.QUESTIONS["count"], f"<answer>{len(scene.cubes)}</answer>", "count")
    _, _, a, _ = pretrain.perception_example(scene, image, rng, "colours")
    names = re.fullmatch(r"<answer>(.*)</answer>", a).group(1).split(", ")
    top_down = sorted(scene.cubes, key=lambda c: (-c.z, c.x))
    assert names == [COLOR_NAMES[c.color] for c in top_down]
    stack = pretrain.Scene("generic", (pretrain.Cube(0.0, 0.0, 0.5, 1.0, (30, 180, 50)),
                                       pretrain.Cube(-0.3, 0.0, 1.5, 1.0, (30, 70, 220))), 1)
    assert pretrain.perception_example(stack, image, rng, "shift")[2] == "<answer>left</answer>"
    mirrored = pretrain.Scene("generic", (stack.cubes[0], pretrain.Cube(0.3, 0.0, 1.5, 1.0, (30, 70, 220))), 1)
    assert pretrain.perception_example(mirrored, image, rng, "shift")[2] == "<answer>right</answer>"
    q, _, a, _ = pretrain.perception_example(scene, image, rng, "bbox")
    assert re.fullmatch(r"<answer>\(\d+, \d+\), \(\d+, \d+\)</answer>", a)
    assert re.search(r"the (\w+) block", q).group(1) in COLOR_NAMES.values()


def test_reduced_budget_build_is_deterministic_and_loads(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from agents.tiny import build_tiny
    from agents.vlm import load_processor

    kwargs = dict(seed=3, shift_steps=1, perception_steps=2, format_steps=1, batch_size=2, shift_batch_size=2,
                  progress=False, threads=1)
    a = pretrain.build_tiny_base(tmp_path / "a", **kwargs)
    b = pretrain.build_tiny_base(tmp_path / "b", **kwargs)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    random = load_file(build_tiny(tmp_path / "random", seed=3) / "model.safetensors")
    trained = load_file(a / "model.safetensors")
    changed = [k for k in random if not torch.equal(random[k], trained[k])]
    assert any("visual" in k for k in changed) and any(k.startswith("model.layers.") for k in changed)
    model = AutoModelForImageTextToText.from_pretrained(a, use_safetensors=True)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in trained.values())
    assert load_processor(str(a)).tokenizer.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id
    assert not list(tmp_path.glob(".a-*"))  # no temporary folder left behind


def test_format_stage_leaves_the_vision_alone(tmp_path):
    from safetensors.torch import load_file

    from agents.tiny import build_tiny

    path = pretrain.build_tiny_base(tmp_path / "f", seed=4, shift_steps=0, perception_steps=0, format_steps=1,
                                    batch_size=2, progress=False, threads=1)
    random = load_file(build_tiny(tmp_path / "random", seed=4) / "model.safetensors")
    trained = load_file(path / "model.safetensors")
    vision = [k for k in random if "visual." in k]  # saved as "visual.*" (loaded as "model.visual.*")
    assert vision and all(random[k].equal(trained[k]) for k in vision)
    assert not random["lm_head.weight"].equal(trained["lm_head.weight"])


def test_bad_budget_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="replay"):
        pretrain.build_tiny_base(tmp_path / "x", perception_steps=1, format_steps=1, replay=2.0, progress=False)


def test_tiny_base_path_lookup():
    import os
    import pathlib

    if (SHIPPED / "model.safetensors").is_file():
        assert tiny_base.tiny_base_path(0) == SHIPPED
    with pytest.raises(FileNotFoundError, match="cubeworld pretrain --seed 7"):
        tiny_base.tiny_base_path(7)
    assert tiny_base.cache_path(7).parent == pathlib.Path(os.environ["CUBEWORLD_CACHE"])  # tests/conftest.py
    with pytest.raises(ValueError):
        tiny_base.tiny_base_path(-1)


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped tiny-base")
def test_shipped_base_answers_every_task_in_format():
    from agents.vlm import VLMAgent
    from envs import ENV_IDS
    from evaluation import evaluate

    agent = VLMAgent.from_pretrained(str(SHIPPED), device="cpu", seed=0)
    for env_id in ENV_IDS:
        result = evaluate(agent, env_id, n_episodes=16, seed=500)
        assert result.legal_rate >= 0.8, (env_id, result.outcome_counts)  # measured 0.86-1.0 on 64 episodes
