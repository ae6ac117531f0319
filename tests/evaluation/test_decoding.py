"""One evaluation decoding, stated and recorded: SamplingParams.min_p, the shared default, the
``"decoding"`` record of every result, the CLI flags, and ``cubeworld eval`` == the trainer's "before"."""

import json

import pytest

from agents.backends.base import EVAL_BATCH_SIZE, EVAL_DECODING, SamplingParams
from agents.baselines import OracleAgent
from evaluation import evaluate
from evaluation.evaluate import EvaluationResult, describe_decoding

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("min_p", [-0.1, 1.0, 1.5, "0.1", float("nan")])
def test_min_p_out_of_range_is_a_clear_error(min_p):
    with pytest.raises(ValueError, match="min_p must be in"):
        SamplingParams(min_p=min_p)


def test_the_default_is_the_papers_evaluation_decoding():
    assert (EVAL_DECODING.temperature, EVAL_DECODING.top_p, EVAL_DECODING.min_p) == (1.0, 1.0, 0.1)
    assert EVAL_DECODING.to_dict() == {"greedy": False, "temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                       "max_new_tokens": 64, "n": 1, "seed": None}
    assert SamplingParams(temperature=0, max_new_tokens=9).to_dict() == {
        "greedy": True, "max_new_tokens": 9, "n": 1, "seed": None}
    assert describe_decoding({**EVAL_DECODING.to_dict(), "seed": 3, "batch_size": 32}) == (
        "temperature 1, top_p 1, min_p 0.1, <= 64 new tokens, seed 3, batch 32")
    assert describe_decoding(None) == "-"


def test_trainer_eval_fields_default_to_the_shared_decoding():
    from training.config import TrainConfig

    cfg = TrainConfig()
    assert (cfg.eval_temperature, cfg.eval_top_p, cfg.eval_min_p, cfg.eval_max_new_tokens) == (
        EVAL_DECODING.temperature, EVAL_DECODING.top_p, EVAL_DECODING.min_p, EVAL_DECODING.max_new_tokens)


def test_hf_backend_passes_min_p_to_generate():
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.vlm import VLMAgent

    agent = VLMAgent.from_pretrained("tiny", device="cpu")
    seen = []
    generate = agent.model.generate

    def spy(**kwargs):
        seen.append({k: kwargs.get(k) for k in ("do_sample", "min_p", "top_p", "temperature")})
        return generate(**kwargs)

    agent.model.generate = spy
    obs, _ = gym.make("TopBlockStability-v0").reset(seed=0)
    agent.sample([obs], params=SamplingParams(temperature=0.7, min_p=0.25, max_new_tokens=4, seed=0))
    agent.sample([obs], params=SamplingParams(temperature=0, max_new_tokens=4))
    assert seen[0] == {"do_sample": True, "min_p": 0.25, "top_p": 1.0, "temperature": 0.7}
    assert seen[1]["do_sample"] is False


def test_evaluate_records_the_decoding_of_model_agents_only():
    from agents.vlm import VLMAgent

    agent = VLMAgent.from_pretrained("tiny", device="cpu", seed=5)
    result = evaluate(agent, "TopBlockStability-v0", n_episodes=2, seed=0)
    assert result.decoding == {**EVAL_DECODING.to_dict(), "seed": 5, "batch_size": EVAL_BATCH_SIZE}
    assert EvaluationResult.from_dict(json.loads(json.dumps(result.to_dict()))).decoding == result.decoding
    assert evaluate(OracleAgent(), "TopBlockStability-v0", n_episodes=2).decoding is None


def test_cli_decoding_flags_reach_the_result(tmp_path):
    from cubeworld.cli import main

    out = tmp_path / "r.json"
    assert main(["eval", "--agent", "vlm:tiny", "--env", "TopBlockStability-v0", "-n", "2", "--quiet",
                 "--greedy", "--max-new-tokens", "8", "--batch-size", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["decoding"] == {"greedy": True, "max_new_tokens": 8, "n": 1, "seed": 0,
                                                       "batch_size": 2}
    assert main(["eval", "--agent", "vlm:tiny", "--env", "TopBlockStability-v0", "-n", "2", "--quiet",
                 "--min-p", "0.2", "--top-p", "0.9", "--seed", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["decoding"] == {
        "greedy": False, "temperature": 1.0, "top_p": 0.9, "min_p": 0.2, "max_new_tokens": 64, "n": 1,
        "seed": 4, "batch_size": EVAL_BATCH_SIZE}


def test_cubeworld_eval_reproduces_the_trainers_before_figure(tmp_path):
    from cubeworld.cli import main
    from training.config import TrainConfig
    from training.trainer import Trainer

    cfg = TrainConfig(model="tiny-base", env_id="TopBlockXOnly-v0", max_steps=1, prompts_per_step=1, group_size=2,
                      max_new_tokens=8, eval_episodes=40, eval_every=0, save_every=0, seed=1,
                      output_dir=str(tmp_path / "run"))
    result = Trainer(cfg).train(progress=False)
    out = tmp_path / "eval.json"
    assert main(["eval", "--agent", "vlm:tiny-base", "--env", cfg.env_id, "-n", str(cfg.eval_episodes),
                 "--seed", str(cfg.eval_seed), "--quiet", "--out", str(out)]) == 0
    ev = EvaluationResult.load(out)
    assert [e.answer for e in ev.episodes] == [e.answer for e in result.before.episodes]
    assert ev.mean_reward == result.before.mean_reward
    assert ev.decoding == result.before.decoding
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["decoding"] == ev.decoding
