"""A finished run's files (metrics.jsonl, result.json) and the training-curve figure drawn from them."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("matplotlib")

from training.config import TrainConfig  # noqa: E402
from training.curves import main, plot_training_curves, read_metrics  # noqa: E402
from training.trainer import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(model="tiny-base", objective="sft", max_steps=2, prompts_per_step=2, group_size=2,
                         max_new_tokens=10, eval_episodes=8, eval_every=1, save_every=0, seed=1,
                         output_dir=str(out))
    Trainer(config).train(progress=False)
    return out


def test_run_logs_training_reward_intervals_and_baselines(run_dir):
    rows, result = read_metrics(run_dir)
    train = [r for r in rows if "loss" in r]
    assert len(train) == 2 and all(-5.0 <= r["reward_mean"] <= 20.0 for r in train)
    evals = [r for r in rows if "eval_reward" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    assert all(r["eval_ci_low"] <= r["eval_reward"] <= r["eval_ci_high"] for r in evals)
    assert result["after"]["mean_reward"] == pytest.approx(evals[-1]["eval_reward"])
    # The best constant on the held-out seeds is at least as good as answering 0 there.
    best = result["constant_baseline"]
    assert result["constant_answer"].startswith("<answer>") and best["n_episodes"] == 8
    from agents.baselines import ConstantAgent
    from evaluation import evaluate

    at_zero = evaluate(ConstantAgent("<answer>0</answer>"), "TopBlockXOnly-v0", n_episodes=8, seed=1_000_000)
    assert best["mean_reward"] >= at_zero.mean_reward
    assert "random_baseline" in result


def test_curves_png_is_written(run_dir, tmp_path):
    out = plot_training_curves({"SFT": run_dir, "again": run_dir}, tmp_path / "curves.png", smooth=2)
    assert out.stat().st_size > 10_000
    assert main(["--run", f"SFT={run_dir}", "--out", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").exists()


def test_cubeworld_curves_draws_a_run(run_dir, tmp_path):
    from cubeworld.cli import main as cubeworld

    assert cubeworld(["curves", "--run", f"SFT={run_dir}", "--out", str(tmp_path / "c.png"), "--smooth", "2"]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(tmp_path)
    with pytest.raises(ValueError, match="smooth"):
        plot_training_curves({}, tmp_path / "x.png")
