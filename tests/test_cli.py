"""The ``cubeworld`` command at the edges a new user touches: one error line (exit 2), never a traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cubeworld.cli import main

REPO = Path(__file__).resolve().parents[1]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cubeworld {command}: error: "), err
    return lines[0]


def test_eval_with_a_missing_model_folder(capsys):
    pytest.importorskip("torch")
    assert main(["eval", "--agent", "vlm:/nonexistent", "--env", "TopBlockXOnly-v0", "-n", "2", "--quiet"]) == 2
    line = _one_line_error(capsys, "eval")
    assert "'/nonexistent'" in line and "no such folder" in line
    assert "config.json" in line and "'tiny-base'" in line and "hub id available offline" in line


def test_eval_with_a_hub_id_not_available_offline_in_a_fresh_process():
    pytest.importorskip("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cubeworld", "eval", "--agent", "vlm:no-such-org/no-such-model",
                           "--env", "TopBlockXOnly-v0", "-n", "2", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "pybullet build time" not in proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("cubeworld eval: error: cannot load model 'no-such-org/no-such-model'")
    assert "hub id available offline" in line


def test_eval_has_no_adapter_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--agent", "vlm:tiny", "--adapter", "x", "--env", "TopBlockXOnly-v0"])
    assert info.value.code == 2 and "unrecognized arguments: --adapter" in capsys.readouterr().err


@pytest.mark.parametrize("config,fragment", [
    ("nope.yaml", "config 'nope.yaml' is no such file and names no shipped config; shipped: "),
    ("paper/grpo_top_block_x_onyl", "did you mean paper/grpo_top_block_x_only"),
])
def test_train_with_an_unknown_config(capsys, config, fragment):
    assert main(["train", "--config", config]) == 2
    line = _one_line_error(capsys, "train")
    assert fragment in line and "pass a YAML file or a shipped config name" in line


@pytest.mark.parametrize("make", [lambda d: d / "missing", lambda d: d, lambda d: (d / "checkpoints").mkdir() or d],
                         ids=["missing", "empty", "no-checkpoint"])
def test_train_resume_with_nothing_to_resume(tmp_path, capsys, make):
    pytest.importorskip("torch")
    out = make(tmp_path)
    assert main(["train", "--resume", "--output-dir", str(out), "--quiet"]) == 2
    line = _one_line_error(capsys, "train")
    assert f"nothing to resume: {out / 'checkpoints'}" in line and "drop resume (--resume)" in line
    assert not (out / "metrics.jsonl").exists()  # nothing was started


def test_train_on_vllm_without_vllm_names_the_extra_and_the_setup_script(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    assert main(["train", "--set", "backend=vllm", "--output-dir", str(tmp_path / "run"), "--quiet"]) == 2
    line = _one_line_error(capsys, "train")
    assert "pip install 'cubeworld[vllm]'" in line and "bash scripts/setup_vllm_env.sh" in line
    assert not (tmp_path / "run").exists()


def test_train_with_a_missing_model(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["train", "--model", str(tmp_path / "no-model"), "--output-dir", str(tmp_path / "run"),
                 "--quiet"]) == 2
    assert f"model '{tmp_path / 'no-model'}': no such folder" in _one_line_error(capsys, "train")


def test_train_help_lists_every_config_field_with_help_and_default(capsys):
    from training.config import TrainConfig

    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = f"--{f.name.replace('_', '-')}VALUE"
        assert flag in out and "".join(f"{f.metadata['help']}(default:{json.dumps(default)})".split()) in out, f.name
    assert "paper/grpo_top_block_x_only" in out


@pytest.mark.parametrize("command", ["pretrain", "curves"])
def test_pretrain_and_curves_are_subcommands(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: cubeworld {command}" in out
    assert ("--perception-steps" in out and "--report" in out) if command == "pretrain" else "--run LABEL=DIR" in out


def test_curves_errors(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["curves", "--run", f"x={tmp_path}", "--out", str(tmp_path / "c.png")]) == 2
    assert "not found: pass the output_dir of a `cubeworld train` run" in _one_line_error(capsys, "curves")
    with pytest.raises(SystemExit) as info:
        main(["curves", "--run", "no-label"])
    assert info.value.code == 2 and "--run must be LABEL=DIR" in capsys.readouterr().err


def test_eval_on_a_multi_step_id(tmp_path, capsys):
    out = tmp_path / "retry.json"
    assert main(["eval", "--env", "TopBlockXOnly-Retry-v0", "--agent", "oracle", "-n", "4", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "retry, at most 3 turns" in text and "success within k" in text and "k=1 1.000" in text
    data = json.loads(out.read_text())
    assert data["interaction"] == "retry" and data["success_at_k"][0] == 1.0 and data["episodes"][0]["turns"]


def test_demo_writes_episode_strips_of_the_multi_step_ids(tmp_path, capsys):
    from PIL import Image

    import envs

    assert main(["demo", "--out", str(tmp_path), "-n", "2", "--images", "1"]) == 0
    text = capsys.readouterr().out
    for env_id in envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.WORLD_ENV_IDS:
        assert env_id in text and (tmp_path / f"{env_id}_seed0.png").exists()
    for env_id in envs.MULTI_STEP_ENV_IDS:
        for agent in ("oracle", "random"):
            with Image.open(tmp_path / f"{env_id}_seed0_{agent}_episode.png") as png:
                assert png.mode == "RGB" and png.width >= 2 * 256 and png.height > 256  # >= 1 turn + the result
    assert not list(tmp_path.glob(f"{envs.ENV_IDS[0]}*episode.png"))  # single-step ids: no strips


def test_eval_matrix_on_a_multi_step_id_has_no_constant_baseline(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["eval-matrix", "--agent", "random", "--env", "TopBlockXOnly-Retry-v0", "-n", "3", "--quiet",
                 "--out", str(tmp_path)]) == 0
    row = (tmp_path / "baselines.csv").read_text().splitlines()[1].split(",")
    assert row[0] == "TopBlockXOnly-Retry-v0" and row[3:8] == [""] * 5  # best constant: not applicable
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["baselines"]["TopBlockXOnly-Retry-v0"]["constant"] is None
    assert data["cells"][0]["interaction"] == "retry" and (tmp_path / "matrix.png").exists()


def test_env_kwargs_reach_the_env_and_bad_keys_fail_with_close_matches(tmp_path, capsys):
    out = tmp_path / "four.json"
    assert main(["eval", "--env", "TowerBuild-v0", "--agent", "oracle", "-n", "3", "--quiet", "--out", str(out),
                 "--env-kwargs", '{"n_blocks": [4, 4]}']) == 0
    episodes = json.loads(out.read_text())["episodes"]
    assert [len(e["turns"]) for e in episodes] == [4, 4, 4]  # the oracle lifts each of the four cubes once
    capsys.readouterr()
    assert main(["eval-matrix", "--agent", "random", "--env", "TowerBuild-v0", "-n", "2", "--quiet",
                 "--out", str(tmp_path / "m"), "--env-kwargs", '{"n_blockz": [4, 4]}']) == 2
    assert "did you mean 'n_blocks'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--env", "TowerBuild-v0", "--agent", "oracle", "--env-kwargs", "[4]"])
    assert "must be a JSON object" in capsys.readouterr().err
    # train-sb3 checks its kwargs before it trains anything
    assert main(["train-sb3", "--env", "TopBlockStability-v0", "--out", str(tmp_path / "p.zip"),
                 "--env-kwargs", '{"stlye": "lerer"}']) == 2
    assert "did you mean 'style'" in capsys.readouterr().err and not (tmp_path / "p.zip").exists()
