"""The trainer on vLLM rollouts, for real: ``Trainer`` with ``backend="vllm"`` on the tiny base.

Runs only where vLLM is installed (``bash scripts/setup_vllm_env.sh``; CI's second stage).
One run of the user's path (the engine built from the config, as ``cubeworld train --set
backend=vllm`` does) is interrupted after its second checkpoint and resumed. Checked:

* the evaluation before training generates through the engine (the adapter is published
  before the first generation);
* after every update the engine's log-probabilities of fresh completions equal the learner's
  teacher-forced ones under the same adapter within 1e-4 (fp32): the engine serves the
  updated adapter, not a stale one;
* only the newest published adapter version remains on disk;
* truncated importance sampling is on by default and logged; the run resumes to the end.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (its tests run in the environment of scripts/setup_vllm_env.sh)",
                allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from training.config import TrainConfig  # noqa: E402
from training.trainer import Trainer  # noqa: E402

TOL = 1e-4


class Interrupted(Exception):
    """Stands in for a kill: raised from inside the loop, after a checkpoint."""


def _checking_publish(trainer, probes, gaps, stop_after=None):
    """Wrap ``trainer._publish_adapter``: after each publish, compare engine and learner log-probs on
    fresh completions, check the folders on disk, and optionally interrupt after step ``stop_after``."""
    publish = trainer._publish_adapter

    def checked(step):
        publish(step)
        agent = trainer.agent
        root = trainer.output_dir / "rollout_adapter"
        assert sorted(p.name for p in root.iterdir()) == [f"v{step}"]
        request = agent._adapter_request()
        assert request.path == str(root / f"v{step}")
        from agents.backends.base import SamplingParams

        groups = agent.sample(probes, params=SamplingParams(temperature=1.0, max_new_tokens=8, n=2, seed=step))
        obs = [o for o, group in zip(probes, groups) for _ in group]
        ids = [c.token_ids for group in groups for c in group]
        trainer.model.eval()
        with torch.no_grad():
            learner = agent.completion_logprobs(obs, ids)
        worst = max(float((torch.tensor(c.logprobs) - row).abs().max())
                    for c, row in zip([c for g in groups for c in g], learner) if c.token_ids)
        gaps.append((step, worst))
        if stop_after is not None and step == stop_after:
            raise Interrupted(f"stopped after step {step}")

    trainer._publish_adapter = checked


def test_trainer_on_vllm_rollouts_runs_is_interrupted_and_resumes(vllm_environment, observations, tmp_path):
    from agents.vlm import VLMAgent

    config = TrainConfig(model="tiny-base", backend="vllm", device="cpu", dtype="float32", max_steps=4,
                         prompts_per_step=2, group_size=4, max_new_tokens=12, learning_rate=5e-3, lora_r=8,
                         lora_alpha=8, kl_coef=0.0, eval_episodes=4, eval_every=0, save_every=2, seed=1,
                         output_dir=str(tmp_path / "run"))
    assert config.tis_enabled
    probes = observations[:2]
    gaps: list[tuple[int, float]] = []
    first = Trainer(config)  # builds the engine from the config, as `cubeworld train` does
    _checking_publish(first, probes, gaps, stop_after=3)
    with pytest.raises(Interrupted):
        first.train(progress=False)
    backend = first.agent.backend
    assert backend.name == "vllm" and backend.enable_lora
    assert (tmp_path / "run" / "checkpoints" / "step-000002").exists()
    assert not (tmp_path / "run" / "checkpoints" / "step-000004").exists()

    learner = VLMAgent.from_pretrained("tiny-base", backend=backend, device="cpu", dtype="float32")
    second = Trainer(config, agent=learner)  # the same engine: a second one would not fit a CI machine's time
    _checking_publish(second, probes, gaps)
    result = second.train(resume=True, progress=False)

    assert [s for s, _ in gaps] == [0, 1, 2, 3, 2, 3, 4]  # published at the start, then after every update
    assert all(gap < TOL for _, gap in gaps), gaps
    assert sorted(p.name for p in (tmp_path / "run" / "rollout_adapter").iterdir()) == ["v4"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4]
    trained = [r for r in rows if r.get("groups_used")]
    assert trained and all("tis_weight_mean" in r and 0 < r["tis_weight_mean"] <= config.tis_cap for r in trained)
    assert all(r["logprob_gap"] < TOL for r in trained)
    assert result.before is not None and result.after is not None and result.steps == 4
    moved = any("lora_B" in n and p.abs().sum() > 0 for n, p in second.model.named_parameters())
    assert moved, "the adapter never changed: the check above would prove nothing"


def test_the_engine_serves_the_vision_encoders_adapter(vllm_environment, observations, tmp_path):
    """train_vision on vLLM: the engine is built with tower LoRA on (vLLM's enable_tower_connector_lora),
    so after updates that moved the vision adapter its log-probs still equal the learner's. Without
    the option vLLM silently ignores the vision adapter (measured: a gap of 1.09 nats)."""
    from agents.backends.base import SamplingParams

    config = TrainConfig(model="tiny-base", backend="vllm", device="cpu", dtype="float32", max_steps=2,
                         prompts_per_step=2, group_size=4, max_new_tokens=8, learning_rate=5e-2, lora_r=8,
                         lora_alpha=8, kl_coef=0.0, eval_episodes=0, eval_every=0, save_every=0, train_vision=True,
                         output_dir=str(tmp_path / "vision"))
    trainer = Trainer(config)
    trainer.train(progress=False)
    moved = [n for n, p in trainer.model.named_parameters() if "visual" in n and "lora_B" in n and p.abs().sum() > 0]
    assert moved, "the vision adapter never changed: the comparison below would prove nothing"
    agent = trainer.agent
    groups = agent.sample(observations[:2], params=SamplingParams(temperature=1.0, max_new_tokens=8, n=2, seed=3))
    obs = [o for o, group in zip(observations[:2], groups) for _ in group]
    trainer.model.eval()
    with torch.no_grad():
        learner = agent.completion_logprobs(obs, [c.token_ids for g in groups for c in g])
    worst = max(float((torch.tensor(c.logprobs) - row).abs().max())
                for c, row in zip([c for g in groups for c in g], learner) if c.token_ids)
    assert worst < TOL


def test_multi_turn_training_on_vllm_rollouts(vllm_environment, tmp_path):
    """GRPO over retry trajectories with the engine generating every turn (multi-image chats): the
    engine's log-probs of the sampled tokens equal the learner's teacher-forced ones on every row
    (logged ``logprob_gap``), so the loss sees exactly what was sampled, later turns included."""
    config = TrainConfig(model="tiny-base", backend="vllm", device="cpu", dtype="float32", max_steps=2,
                         env_id="TopBlockXOnly-Retry-v0", return_type="sum", prompts_per_step=2, group_size=4,
                         max_new_tokens=10, learning_rate=5e-3, lora_r=8, lora_alpha=8, kl_coef=0.0,
                         eval_episodes=0, eval_every=0, save_every=0, output_dir=str(tmp_path / "mt"))
    assert config.agent_kwargs()["backend_options"]["max_images_per_prompt"] == 3
    trainer = Trainer(config)
    trainer.train(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "mt" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["turns_per_trajectory"] > 1 for r in rows)
    trained = [r for r in rows if r.get("groups_used")]
    assert trained and all(r["logprob_gap"] < TOL for r in trained), rows
    moved = any("lora_B" in n and p.abs().sum() > 0 for n, p in trainer.model.named_parameters())
    assert moved, "the adapter never changed"
