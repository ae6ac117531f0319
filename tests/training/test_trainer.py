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
from training.trainer import Trainer, lora_target_regex  # noqa: E402

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


def _train_cmd(out: Path, max_steps: int, resume: bool = False) -> list[str]:
    sets = {**SMALL, "max_steps": max_steps, "save_every": 1, "objective": "grpo"}
    cmd = [sys.executable, "-m", "cubeworld", "train", "--quiet", "--output-dir", str(out)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + (["--resume"] if resume else [])


def test_sigkilled_run_resumes_to_the_same_adapter(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(full, 4), check=True, env=env, cwd=REPO, capture_output=True)
    proc = subprocess.Popen(_train_cmd(killed, 4), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-000002").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / "step-000004").exists(), "killed too late: nothing left to resume"
    subprocess.run(_train_cmd(killed, 4, resume=True), check=True, env=env, cwd=REPO, capture_output=True)
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
