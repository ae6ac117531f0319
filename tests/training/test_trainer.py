"""The trainer end to end on the tiny base: each objective, only LoRA trains, resume after SIGKILL."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.lora_targets import lora_target_regex  # noqa: E402
from training.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(model="tiny-base", max_steps=2, prompts_per_step=2, group_size=4, max_new_tokens=10,
             eval_episodes=0, eval_every=0, save_every=0, learning_rate=1e-3, seed=3)


def test_lora_targets_exclude_the_vision_encoder_unless_asked():
    lang = re.compile(lora_target_regex(["q_proj", "gate_proj"], train_vision=False))
    both = re.compile(lora_target_regex(["q_proj", "gate_proj"], train_vision=True))
    assert lang.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert lang.fullmatch("model.language_model.layers.1.mlp.gate_proj")
    assert not lang.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert not lang.fullmatch("model.language_model.layers.0.self_attn.k_proj")
    assert both.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert both.fullmatch("model.visual.blocks.0.attn.qkv")


def _base_name(name: str) -> str:
    return name.replace("base_model.model.", "", 1).replace(".base_layer", "")


@pytest.mark.parametrize("objective", ["sft", "grpo", "gspo"])
def test_each_objective_trains_only_the_adapter(objective, tmp_path):
    from agents.vlm import VLMAgent

    agent = VLMAgent.from_pretrained("tiny-base")
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    config = TrainConfig(**SMALL, objective=objective, output_dir=str(tmp_path / objective))
    trainer = Trainer(config, agent=agent)
    trainer.train(progress=False)
    lora_changed = False
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            lora_changed |= "lora_B" in name and bool(param.abs().sum() > 0)
            continue
        assert torch.equal(param, before[_base_name(name)]), f"base weight {name} changed"
    assert lora_changed, "no LoRA weight moved"
    lines = (tmp_path / objective / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"loss"' in lines[-1]
    assert (tmp_path / objective / "checkpoints" / "step-000002" / "adapter_model.safetensors").exists()


def test_refuses_to_overwrite_a_run(tmp_path):
    config = TrainConfig(**SMALL, objective="sft", output_dir=str(tmp_path))
    Trainer(config).train(progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(config).train(progress=False)


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    from training.trainer import NothingToResumeError

    (tmp_path / "checkpoints").mkdir()
    for out, what in ((tmp_path / "missing", "does not exist"), (tmp_path, "holds no complete checkpoint")):
        config = TrainConfig(**SMALL, output_dir=str(out))
        with pytest.raises(NothingToResumeError, match=f"nothing to resume: {re.escape(str(out / 'checkpoints'))} {what}"):
            Trainer(config).train(resume=True, progress=False)
        assert not (out / "metrics.jsonl").exists()


def _train_cmd(out: Path, max_steps: int, resume: bool = False, env_id: str = "TopBlockXOnly-v0") -> list[str]:
    sets = {**SMALL, "max_steps": max_steps, "save_every": 1, "objective": "grpo", "env_id": env_id}
    cmd = [sys.executable, "-m", "cubeworld", "train", "--quiet", "--output-dir", str(out)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + (["--resume"] if resume else [])


@pytest.mark.parametrize("env_id", ["TopBlockXOnly-v0", "TopBlockXOnly-Retry-v0"])  # one turn and several
def test_sigkilled_run_resumes_to_the_same_adapter(tmp_path, env_id):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(full, 4, env_id=env_id), check=True, env=env, cwd=REPO, capture_output=True)
    proc = subprocess.Popen(_train_cmd(killed, 4, env_id=env_id), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-000002").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / "step-000004").exists(), "killed too late: nothing left to resume"
    subprocess.run(_train_cmd(killed, 4, resume=True, env_id=env_id), check=True, env=env, cwd=REPO,
                   capture_output=True)
    a = load_file(str(full / "checkpoints" / "step-000004" / "adapter_model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "step-000004" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_qlora_step_runs_on_cpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    config = TrainConfig(**{**SMALL, "max_steps": 1}, objective="grpo", load_in_4bit=True,
                         output_dir=str(tmp_path))
    trainer = Trainer(config)
    trainer.train(progress=False)
    assert any("4bit" in type(m).__name__ for m in trainer.model.modules())
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in trainer.model.named_parameters())


def test_kl_to_the_base_is_zero_before_the_first_update_then_positive(tmp_path):
    config = TrainConfig(**{**SMALL, "max_steps": 3, "group_size": 8}, objective="grpo", kl_coef=0.1,
                         skip_degenerate_groups=False, output_dir=str(tmp_path))
    trainer = Trainer(config)
    trainer.train(progress=False)
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kls = [r["kl"] for r in rows if "kl" in r]
    assert len(kls) == 3
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # a fresh adapter (B = 0) is the base itself
    assert kls[-1] > 1e-6


def _capture_rollouts(monkeypatch):
    """Record every rollout batch the trainer collects."""
    import training.trainer as trainer_module

    batches = []
    original = trainer_module.collect_trajectories

    def recording(*args, **kwargs):
        batches.append(original(*args, **kwargs))
        return batches[-1]

    monkeypatch.setattr(trainer_module, "collect_trajectories", recording)
    return batches


def test_one_update_moves_log_probabilities_with_the_advantage(tmp_path, monkeypatch):
    """The sign: after one GRPO update, the batch's advantage-weighted log-probability rises (to first
    order it is lr * ||grad||_1 for Adam's first step), completions with positive advantage gain
    log-probability on average and those with negative advantage lose it."""
    from training.objectives import group_advantages

    batches = _capture_rollouts(monkeypatch)
    config = TrainConfig(**{**SMALL, "max_steps": 1, "group_size": 8, "prompts_per_step": 4}, kl_coef=0.0,
                         output_dir=str(tmp_path))
    trainer = Trainer(config)
    trainer.train(progress=False)
    groups = batches[0]
    assert all(len(t.turns) == 1 for g in groups for t in g)  # single-step: one turn each
    adv = group_advantages(torch.tensor([[t.turns[0].reward for t in g] for g in groups], dtype=torch.float32))
    turns = [t.turns[0] for g in groups for t in g]
    obs, ids = [t.observation for t in turns], [t.completion.token_ids for t in turns]
    with torch.no_grad():
        after = [float(r.sum()) for r in trainer.agent.completion_logprobs(obs, ids)]
    before = [sum(t.completion.logprobs) for t in turns]
    delta = torch.tensor(after) - torch.tensor(before)
    a = adv.flatten()
    assert (a != 0).sum() >= 4, "too few informative groups to test the sign"
    assert float((a * delta).sum()) > 0
    assert float(delta[a > 0].mean()) > 0 > float(delta[a < 0].mean())


def test_a_second_iteration_over_the_batch_clips(tmp_path):
    """num_iterations = 2 with a large learning rate: the second pass sees ratios away from 1, so the
    clipped term acts (clip_fraction > 0); with mu = 1 the ratio stays ~1 on the hf backend."""
    import json

    rows = {}
    for mu in (1, 2):
        out = tmp_path / f"mu{mu}"
        config = TrainConfig(**{**SMALL, "max_steps": 2, "group_size": 8, "learning_rate": 0.05}, kl_coef=0.0,
                             num_iterations=mu, output_dir=str(out))
        Trainer(config).train(progress=False)
        rows[mu] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["clip_fraction"] for r in rows[2]) > 0
    assert max(r.get("ratio_max", 1.0) for r in rows[2]) > 1.2
    assert all(r["ratio_max"] < 1.01 for r in rows[1] if "ratio_max" in r)


def test_group_tokens_trains_and_multi_task_runs_evaluate_every_env(tmp_path):
    import json

    mix = {"TopBlockXOnly-v0": 1.0, "SideBlockXOnly-v0": 1.0}
    config = TrainConfig(**{**SMALL, "max_steps": 1, "eval_episodes": 4}, env_mix=mix, grad_accum_steps=2,
                         loss_normalisation="group_tokens", output_dir=str(tmp_path))
    result = Trainer(config).train(progress=False)
    assert list(result.per_env) == list(mix)
    for env_id, row in result.per_env.items():
        assert row["before"].env_id == row["after"].env_id == row["constant_baseline"].env_id == env_id
        assert row["random_baseline"].n_episodes == 4 and row["constant_answer"].startswith("<answer>")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert list(saved["envs"]) == list(mix) and saved["after"] == saved["envs"]["TopBlockXOnly-v0"]["after"]
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert set(first) >= {"eval_reward/TopBlockXOnly-v0", "eval_reward/SideBlockXOnly-v0", "eval_reward"}


def test_a_disk_reading_backend_gets_each_adapter_version_before_it_generates(tmp_path):
    """The vLLM contract, with the hf backend standing in: the adapter is published as a PEFT folder
    before the first generation (the evaluation before training included) and after every update,
    each version under a new folder, and only the newest folder is kept."""
    from agents.backends.hf import HFBackend
    from agents.vlm import VLMAgent

    seen = []

    class DiskBackend(HFBackend):
        needs_adapter_folder = True

        def generate(self, prompts, images, params, adapter=None):
            assert adapter is not None and adapter.path is not None, "generated before the adapter was published"
            folders = sorted(p.name for p in (tmp_path / "rollout_adapter").iterdir())
            assert folders == [Path(adapter.path).name], folders
            assert (Path(adapter.path) / "adapter_model.safetensors").exists()
            seen.append(adapter.version)
            return super().generate(prompts, images, params, adapter)

    agent = VLMAgent.from_pretrained("tiny-base")
    agent.backend = DiskBackend(agent.model, agent.processor)
    config = TrainConfig(**{**SMALL, "max_steps": 2, "eval_episodes": 2}, output_dir=str(tmp_path))
    agent_model_before = agent.model
    Trainer(config, agent=agent).train(progress=False)
    assert agent_model_before is not None and seen[0] == 1 and seen[-1] == 3  # v0 published, then after 2 steps
    assert sorted(p.name for p in (tmp_path / "rollout_adapter").iterdir()) == ["v2"]


def test_a_run_starts_from_init_adapter_and_trains_it_further(tmp_path):
    from training.config_rules import ConfigError

    first = TrainConfig(**{**SMALL, "max_steps": 1}, objective="sft", output_dir=str(tmp_path / "sft"))
    Trainer(first).train(progress=False)
    start = tmp_path / "sft" / "checkpoints" / "step-000001"
    saved = load_file(str(start / "adapter_model.safetensors"))
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in saved.items())
    config = TrainConfig(**{**SMALL, "max_steps": 1}, objective="sft", init_adapter=str(start),
                         output_dir=str(tmp_path / "then"))
    trainer = Trainer(config)
    trainer._setup()
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(trainer.model)
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    Trainer(config).train(progress=False)
    after = load_file(str(tmp_path / "then" / "checkpoints" / "step-000001" / "adapter_model.safetensors"))
    assert not all(torch.equal(after[k], saved[k]) for k in saved), "training from init_adapter moved nothing"
    with pytest.raises(ConfigError, match="lora_r"):
        TrainConfig(**SMALL, init_adapter=str(start), lora_r=8, output_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig(**SMALL, init_adapter=str(tmp_path / "nowhere"), output_dir=str(tmp_path / "y"))
