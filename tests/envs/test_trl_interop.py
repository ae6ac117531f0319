"""The TRL-facing interface: the reward function equals ``env.step``; the exported dataset round-trips."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import datasets
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.trl_interop import COLUMNS, completion_text, export_dataset, reward_function
from envs.worlds import env_polarity

REPO = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 5)

# Per env: a legal but (for these seeds) wrong answer, an out-of-range one.
WRONG = {"TopBlockStability-v0": ("<answer>Yes</answer>", "<answer>No</answer>"),
         "TopBlockXOnly-v0": ("<answer>250</answer>", "<answer>9999</answer>"),
         "SideBlockXOnly-v0": ("<answer>-40</answer>", "<answer>-601</answer>"),
         "SideBlockXY-v0": ("<answer>0, 0</answer>", "<answer>10, 1001</answer>")}
# The worlds of DESIGN.md section 8 are single-step too: their two answers, whichever is wrong.
WRONG.update({env_id: tuple(f"<answer>{a}</answer>" for a in env_polarity(env_id)[0]) for env_id in envs.WORLD_ENV_IDS})
SINGLE_STEP_IDS = envs.ENV_IDS + envs.WORLD_ENV_IDS


def _completions(env_id: str, optimal: str) -> list:
    """Strings and TRL's conversational forms: optimal, wrong, out of range, garbage, empty."""
    wrong, other = WRONG[env_id]
    return [
        optimal, wrong, other, "The tower <answer>", "", "\x00\U0001f600 <answer></answer>",
        [{"role": "assistant", "content": optimal}],
        [{"role": "assistant", "content": [{"type": "text", "text": "thinking... "}, {"type": "text", "text": wrong}]}],
        [{"role": "assistant", "content": None}],
    ]


def _step_reward(env_id: str, seed: int, text: str) -> tuple[float, str]:
    env = gym.make(env_id)
    env.reset(seed=seed)
    _, reward, terminated, _, info = env.step(text)
    env.close()
    assert terminated
    return reward, info["outcome"]


@pytest.mark.parametrize("env_id", SINGLE_STEP_IDS)
def test_reward_function_equals_env_step(env_id):
    reward_fn = envs.reward_function(env_id)
    probe = gym.make(env_id)
    rows = []
    for seed in SEEDS:
        _, info = probe.reset(seed=seed)
        rows += [(seed, json.dumps(info["scene"]), c) for c in _completions(env_id, info["optimal_action"])]
    # Groups back to back, as TRL orders them, then interleaved scenes (a reset per row).
    for order in (rows, rows[::3] + rows[1::3] + rows[2::3]):
        got = reward_fn(prompts=[None] * len(order), completions=[c for _, _, c in order],
                        scene=[s for _, s, _ in order])
        want = [_step_reward(env_id, seed, completion_text(c))[0] for seed, _, c in order]
        assert got == want  # exactly: the same simulation, not merely close
        assert all(type(r) is float for r in got)
    outcomes = {_step_reward(env_id, seed, completion_text(c))[1] for seed, _, c in rows}
    assert "unparseable" in outcomes and len(outcomes) >= 3  # the table covers more than one branch


def test_reward_function_accepts_scene_dicts_and_survives_pickling():
    env = gym.make("SideBlockXY-v0")
    _, info = env.reset(seed=3)
    reward_fn = envs.reward_function("envs:SideBlockXY-v0", reasoning=True)
    copy = pickle.loads(pickle.dumps(reward_fn))
    answers = [info["optimal_action"], "<answer>0, 0</answer>"]
    assert reward_fn(None, answers, scene=[info["scene"]] * 2) == copy(None, answers, scene=[json.dumps(info["scene"])] * 2)
    assert reward_fn.__name__ == copy.__name__ == "cubeworld_SideBlockXY-v0"
    reward_fn.close()
    assert reward_fn(None, answers[:1], scene=[info["scene"]]) == [_step_reward("SideBlockXY-v0", 3, answers[0])[0]]


def test_rows_of_another_env_get_none_and_trl_loggers_are_fed():
    env = gym.make("TopBlockXOnly-v0")
    _, info = env.reset(seed=0)
    scene = json.dumps(info["scene"])
    metrics, extras = {}, {}
    rewards = envs.reward_function("TopBlockXOnly-v0")(
        prompts=None, completions=[info["optimal_action"], "no", "x"], scene=[scene] * 3,
        env_id=["TopBlockXOnly-v0", "TopBlockXOnly-v0", "TopBlockStability-v0"],
        log_metric=metrics.__setitem__, log_extra=extras.__setitem__, trainer_state=object())
    assert rewards[0] > 19.99 and rewards[1] == -5.0 and rewards[2] is None
    assert metrics == {"cubeworld_TopBlockXOnly-v0/legal_rate": 0.5}
    assert extras == {"cubeworld_TopBlockXOnly-v0/outcome": ["stable", "unparseable", None]}


def test_reward_function_rejects_bad_calls():
    env = gym.make("TopBlockXOnly-v0")
    _, info = env.reset(seed=0)
    scene = json.dumps(info["scene"])
    reward_fn = envs.reward_function("TopBlockXOnly-v0")
    with pytest.raises(ValueError, match="'scene' column"):
        reward_fn(["p"], ["<answer>1</answer>"])
    with pytest.raises(ValueError, match="2 scenes for 1 completions"):
        reward_fn(["p"], ["a"], scene=[scene, scene])
    with pytest.raises(ValueError, match="one scene for 1 completions"):
        reward_fn(["p"], ["a"], scene=scene)
    with pytest.raises(ValueError, match="not JSON"):
        reward_fn(["p"], ["a"], scene=["{oops"])
    side = gym.make("SideBlockXOnly-v0")
    _, side_info = side.reset(seed=0)
    with pytest.raises(ValueError, match="'side_block' scene"):
        reward_fn(["p"], ["a"], scene=[json.dumps(side_info["scene"])])
    with pytest.raises(TypeError, match="a completion must be a str"):
        reward_fn(["p"], [42], scene=[scene])
    # After the failures it still scores, from a clean reset.
    assert reward_fn(["p"], [info["optimal_action"]], scene=[scene]) == [_step_reward("TopBlockXOnly-v0", 0, info["optimal_action"])[0]]


@pytest.mark.parametrize("bad, fragment", [("TopBlockXonly-v0", "did you mean 'TopBlockXOnly-v0'"),
                                           ("Nope-v0", "known ids: TopBlockStability-v0"),
                                           ("RealTowerStability-v0", "no scenes to simulate")])
def test_unknown_env_ids_are_named_with_close_matches(bad, fragment, tmp_path):
    with pytest.raises(ValueError, match=fragment):
        envs.reward_function(bad)
    with pytest.raises(ValueError, match=fragment):
        envs.export_dataset(bad, 1, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_env_kwargs_fail_when_the_reward_function_is_made():
    with pytest.raises(TypeError):
        envs.reward_function("TopBlockXOnly-v0", no_such_option=1)


@pytest.mark.parametrize("env_id", SINGLE_STEP_IDS)
def test_exported_optimal_answers_score_the_optimum(env_id, tmp_path):
    ds = datasets.load_from_disk(str(envs.export_dataset(env_id, 4, 10, tmp_path / "ds")))
    rewards = envs.reward_function(env_id)(ds["prompt"], ds["optimal_answer"], scene=ds["scene"])
    completions = envs.reward_function(env_id)(ds["prompt"], ds["completion"], scene=ds["scene"])
    assert rewards == completions
    if env_id == "TopBlockStability-v0" or env_id in envs.WORLD_ENV_IDS:
        assert rewards == [1.0] * 4
    else:
        # 20 exp(-d^2), the top reward, with d only the rounding of the answer to whole units (<= 0.005 per axis).
        assert all(20 * math.exp(-2 * 0.005**2) - 1e-9 <= r <= 20 for r in rewards), rewards


def test_export_round_trips_with_its_columns_and_features(tmp_path):
    out = envs.export_dataset("SideBlockXOnly-v0", 3, 7, tmp_path / "nested" / "ds", image_size=64, reasoning=True)
    assert out == tmp_path / "nested" / "ds"
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == list(COLUMNS) and len(ds) == 3
    assert isinstance(ds.features["image"], datasets.Image)
    for name in ("scene", "optimal_answer", "env_id"):
        assert ds.features[name] == datasets.Value("string")
    assert ds.features["seed"] == datasets.Value("int64")
    assert "seeds 7..9" in ds.info.description
    env = gym.make("SideBlockXOnly-v0", image_size=64, reasoning=True)
    for row, seed in zip(ds, (7, 8, 9)):
        obs, info = env.reset(seed=seed)
        assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
        np.testing.assert_array_equal(np.asarray(row["image"]), obs["image"])  # PNG: lossless
        assert row["prompt"] == [{"role": "user", "content": obs["prompt"]}]
        assert row["completion"] == [{"role": "assistant", "content": info["optimal_action"]}]
        assert json.loads(row["scene"]) == info["scene"]
        assert (row["optimal_answer"], row["env_id"], row["seed"]) == (info["optimal_action"], "SideBlockXOnly-v0", seed)
    assert [p.name for p in out.parent.iterdir()] == ["ds"]  # no temporary left beside it


def test_export_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    envs.export_dataset("TopBlockStability-v0", 1, 0, tmp_path / "empty")
    assert len(datasets.load_from_disk(str(tmp_path / "empty"))) == 1


def test_export_refuses_to_overwrite(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="non-empty folder; choose a new output folder or delete"):
        envs.export_dataset("TopBlockXOnly-v0", 1, 0, tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="non-empty file"):
        envs.export_dataset("TopBlockXOnly-v0", 1, 0, tmp_path / "file")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("n, seed, fragment", [(0, 0, "n .rows. must be an int >= 1"), (2.0, 0, "n .rows."),
                                               (1, -1, "seed must be an int >= 0")])
def test_export_rejects_bad_counts_and_seeds(n, seed, fragment, tmp_path):
    with pytest.raises(ValueError, match=fragment):
        envs.export_dataset("TopBlockXOnly-v0", n, seed, tmp_path / "ds")


def test_export_without_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'cubeworld\[trl\]'"):
        envs.export_dataset("TopBlockXOnly-v0", 1, 0, tmp_path / "ds")


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(self, path, **kwargs):
        (Path(path) / "half-written").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", fail)
    with pytest.raises(OSError, match="disk full"):
        envs.export_dataset("TopBlockXOnly-v0", 1, 0, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_completion_text_forms():
    assert completion_text("a") == "a"
    assert completion_text({"role": "assistant", "content": "b"}) == "b"
    assert completion_text([{"role": "user", "content": "u"}, {"role": "assistant", "content": "x"},
                            {"role": "tool", "content": "t"}, {"role": "assistant", "content": "y"}]) == "x\ny"
    assert completion_text([{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "z"}]}]) == "z"
    assert completion_text([]) == ""


def test_envs_stays_free_of_torch():
    code = ("import sys, tempfile, json, gymnasium as gym, envs\n"
            "_, info = gym.make('TopBlockXOnly-v0').reset(seed=0)\n"
            "envs.reward_function('TopBlockXOnly-v0')(None, ['x'], scene=[json.dumps(info['scene'])])\n"
            "envs.export_dataset('TopBlockXOnly-v0', 1, 0, tempfile.mkdtemp() + '/ds')\n"
            "for env_id in envs.MULTI_STEP_ENV_IDS:\n"
            "    e = gym.make(env_id); e.reset(seed=0); e.step('<answer>0</answer>')\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("make", [lambda: reward_function("TopBlockXOnly-Retry-v0"),
                                  lambda: reward_function("TopBlockXOnly-v0", interaction="retry"),
                                  lambda: export_dataset("TowerBuild-v0", 1, 0, "unused")])
def test_multi_step_ids_are_refused_with_the_fix(make):
    with pytest.raises(ValueError, match="multi-step env.*use a single-step id"):
        make()
