"""The generalisation matrix end to end, and the best constant answer against hand-checked cases."""

from __future__ import annotations

import csv
import json
import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents import ConstantAgent, load_agent
from envs.answers import parse_answer
from evaluation import evaluate
from evaluation.best_constant import best_constant_answer, constant_candidates
from evaluation.matrix import MATRIX_CSV_COLUMNS, evaluate_matrix, parse_named_spec

ENVS = ["TopBlockStability-v0", "TopBlockXOnly-v0"]
AGENTS = {"random": "random", "oracle": "oracle", "zero": "constant:<answer>0</answer>", "tiny": "vlm:tiny"}
N, SEED, BATCH = 6, 3, 4


def _scenes(env_id, n, seed):
    env = gym.make(env_id)
    infos = [env.reset(seed=s)[1] for s in range(seed, seed + n)]
    env.close()
    return infos


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("matrix")
    result = evaluate_matrix(AGENTS, ENVS, n_episodes=N, seed=SEED, batch_size=BATCH, out_dir=out, x_step=100)
    return result, out


def test_constant_candidates():
    x = constant_candidates("x")
    assert len(x) == 49 and x[0] == "<answer>-600</answer>" and x[-1] == "<answer>600</answer>"
    assert "<answer>0</answer>" in x
    assert constant_candidates("x", x_step=400) == ["<answer>-400</answer>", "<answer>0</answer>",
                                                    "<answer>400</answer>"]
    xy = constant_candidates("xy")
    assert len(xy) == 25 * 11 and "<answer>0, 0</answer>" in xy and "<answer>-600, 1000</answer>" in xy
    assert all(parse_answer(a, fmt).legal for fmt in ("x", "xy") for a in constant_candidates(fmt))
    assert constant_candidates("binary") == ["<answer>Yes</answer>", "<answer>No</answer>"]
    with pytest.raises(ValueError, match="x_step must be a positive int"):
        constant_candidates("x", x_step=0)
    with pytest.raises(ValueError, match="answer_format"):
        constant_candidates("xyz")


def test_best_constant_hand_checked_x_task():
    # Answer 0 leaves the top cube where it is: the tower's own verdict, d = |offset|, so by hand
    # reward = 20 exp(-offset^2) if it stands, else 2 exp(-offset^2) - 2. Answer 600 slides the cube
    # six edges off: it falls. An xy-style answer is unparseable on an x task: -5.
    candidates = ["<answer>600</answer>", "<answer>0</answer>", "<answer>0, 0</answer>"]
    infos = _scenes("TopBlockXOnly-v0", 12, 0)
    by_hand = np.mean([20 * math.exp(-i["offset"] ** 2) if i["stable_initially"] else 2 * math.exp(-i["offset"] ** 2) - 2
                       for i in infos])
    best = best_constant_answer("TopBlockXOnly-v0", n_episodes=12, seed=0, candidates=candidates)
    assert best.answer == "<answer>0</answer>"
    assert best.mean_reward == pytest.approx(by_hand, abs=1e-9)
    assert best.candidate_means[2] == -5.0
    assert -2.0 <= best.candidate_means[0] < -1.9  # the cube falls, d about 6: 2 exp(-36) - 2
    assert best.rewards.shape == (12, 3)
    # And exactly what evaluate() gives a ConstantAgent on the same seeds.
    assert best.mean_reward == evaluate(ConstantAgent(best.answer), "TopBlockXOnly-v0", 12, 0).mean_reward


def test_best_constant_binary_is_the_majority_answer():
    infos = _scenes("TopBlockStability-v0", 10, 5)
    stable_rate = np.mean([i["stable_initially"] for i in infos])
    best = best_constant_answer("TopBlockStability-v0", n_episodes=10, seed=5)
    assert best.answer == ("<answer>Yes</answer>" if stable_rate >= 0.5 else "<answer>No</answer>")
    assert best.mean_reward == pytest.approx(max(stable_rate, 1 - stable_rate))
    with pytest.raises(gym.error.Error, match="Did you mean"):
        best_constant_answer("TopBlockStabilty-v0", n_episodes=2)


def test_parse_named_spec():
    assert parse_named_spec("grpo=vlm:tiny-base+adapter=runs/x") == ("grpo", "vlm:tiny-base+adapter=runs/x")
    assert parse_named_spec("vlm:tiny-base+adapter=runs/x") == ("vlm:tiny-base+adapter=runs/x",) * 2
    assert parse_named_spec("constant:<answer>0</answer>") == ("constant:<answer>0</answer>",) * 2
    with pytest.raises(ValueError, match="empty spec"):
        parse_named_spec("base=")


def test_matrix_files_and_values_equal_evaluate(matrix):
    result, out = matrix
    for name in ("matrix.csv", "baselines.csv", "matrix.json", "matrix.png"):
        assert (out / name).is_file()
    assert (out / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    with open(out / "matrix.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MATRIX_CSV_COLUMNS
    assert [(r["agent"], r["env"]) for r in rows] == [(a, e) for a in AGENTS for e in ENVS]
    for row in rows:
        expected = evaluate(load_agent(AGENTS[row["agent"]], seed=SEED), row["env"], N, SEED, BATCH)
        assert float(row["mean_reward"]) == expected.mean_reward
        assert (float(row["ci95_low"]), float(row["ci95_high"])) == expected.ci95
        assert float(row["legal_rate"]) == expected.legal_rate
        legal_mean = None if row["legal_mean_reward"] == "" else float(row["legal_mean_reward"])
        assert legal_mean == expected.legal_mean_reward
        assert int(row["n_episodes"]) == N
    assert json.loads((out / "matrix.json").read_text())["agents"] == list(AGENTS)


def test_matrix_baselines_and_normalisation(matrix):
    result, out = matrix
    for env_id in ENVS:
        b = result.baselines[env_id]
        # The random agent's cell is the random baseline; the oracle's is the optimum.
        assert result.cell("random", env_id).mean_reward == b.random.mean_reward
        assert result.normalised("random", env_id) == 0.0 and result.normalised("oracle", env_id) == 1.0
        constant = evaluate(ConstantAgent(b.constant.answer), env_id, N, SEED)
        assert b.constant.mean_reward == constant.mean_reward
        assert b.constant.mean_reward == max(b.constant.candidate_means)
    with open(out / "baselines.csv") as f:
        rows = {r["env"]: r for r in csv.DictReader(f)}
    assert rows["TopBlockXOnly-v0"]["best_constant_answer"] == result.baselines["TopBlockXOnly-v0"].constant.answer
    assert int(rows["TopBlockXOnly-v0"]["n_candidates"]) == 13  # x_step=100 over [-600, 600]
    zero = result.cell("zero", "TopBlockStability-v0")  # "0" is no Yes/No: every answer unparseable
    assert zero.legal_rate == 0.0 and zero.legal_mean_reward is None
    assert "best constant" in result.summary()


def test_bad_input_fails_before_any_evaluation(tmp_path):
    with pytest.raises(gym.error.Error, match="Did you mean"):
        evaluate_matrix({"r": "random"}, ["TopBlockXonly-v0"], n_episodes=2)
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_matrix({"a": f"vlm:tiny+adapter={tmp_path / 'nope'}"}, ["TopBlockXOnly-v0"], n_episodes=2)
    with pytest.raises(ValueError, match="did you mean oracle"):
        evaluate_matrix({"a": "orcale"}, ["TopBlockXOnly-v0"], n_episodes=2)
    with pytest.raises(ValueError, match="more than once"):
        evaluate_matrix({"r": "random"}, ["TopBlockXOnly-v0"] * 2, n_episodes=2)


def test_cli_eval_matrix(tmp_path, capsys):
    from cubeworld.cli import main

    out = tmp_path / "m"
    code = main(["eval-matrix", "--agent", "r=random", "--agent", "oracle", "--env", "SideBlockXY-v0",
                 "-n", "2", "--xy-step", "300,500", "--out", str(out), "--quiet"])
    assert code == 0
    assert "best constant" in capsys.readouterr().out
    with open(out / "matrix.csv") as f:
        assert [r["agent"] for r in csv.DictReader(f)] == ["r", "oracle"]
    with open(out / "baselines.csv") as f:
        assert int(next(csv.DictReader(f))["n_candidates"]) == 5 * 3
    assert main(["eval-matrix", "--agent", "r=random", "--agent", "r=oracle", "--out", str(out)]) == 2


def test_rows_named_by_training_seed_are_pooled_per_condition(tmp_path):
    from evaluation.seeds import SEEDS_CSV_COLUMNS, seed_groups

    agents = {"c-s0": "constant:<answer>0</answer>", "c-s1": "constant:<answer>300</answer>", "oracle": "oracle"}
    assert seed_groups(list(agents) + ["lone-s0"]) == {"c": ["c-s0", "c-s1"]}
    result = evaluate_matrix(agents, ["TopBlockXOnly-v0"], n_episodes=N, seed=SEED, batch_size=BATCH,
                             out_dir=tmp_path, x_step=100)
    with open(tmp_path / "seeds.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SEEDS_CSV_COLUMNS and len(rows) == 1 and rows[0]["group"] == "c"
    means = [result.cell(a, "TopBlockXOnly-v0").mean_reward for a in ("c-s0", "c-s1")]
    row = rows[0]
    assert float(row["mean_reward"]) == pytest.approx(sum(means) / 2)
    assert (float(row["min_reward"]), float(row["max_reward"])) == (min(means), max(means))
    best = result.baselines["TopBlockXOnly-v0"].constant.mean_reward
    assert int(row["seeds_above_constant"]) == sum(m > best for m in means) and row["success_at_k"] == ""
    assert "over training seeds" in result.summary()


def test_named_columns_split_one_id(tmp_path, capsys):
    from cubeworld.cli import main

    code = main(["eval-matrix", "--agent", "oracle", "--env", 'low=TowerStability-v0:{"n_blocks": [2, 2]}',
                 "--env", 'high=TowerStability-v0:{"n_blocks": [7, 7]}', "-n", "3", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["env_ids"] == ["low", "high"]
    blocks = {c["env"]: {e["n_blocks"] for e in c["episodes"]} for c in data["cells"]}
    assert blocks == {"low": {2}, "high": {7}} and all(c["env_id"] == "TowerStability-v0" for c in data["cells"])
    assert main(["eval-matrix", "--agent", "oracle", "--env", "x=TowerStability-v0:[1]", "--quiet"]) == 2
    assert "JSON object" in capsys.readouterr().err
