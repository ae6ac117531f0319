"""TRL as an outside client: its ``GRPOTrainer`` trains on an exported dataset, rewarded by ``envs.reward_function``.

The set-up mirrors ``benchmarks/grpo_runs.py`` (``run_trl``): the processor loaded by
:func:`agents.vlm.load_processor` (no torchvision) with left padding, as TRL loads its own;
a LoRA adapter on ``q_proj``/``v_proj``, names only the language model has (Qwen2.5-VL's vision
attention is ``qkv``); fp32 on the CPU. The model is the shipped ``tiny-base`` (the embedded
tiny model after its pre-training recipe), not the random ``tiny``, which answers nonsense:
nearly every group's rewards would all be the unparseable -5, every advantage 0, and no
parameter would move (benchmarks/trainer_vs_trl.py notes the same).
"""

from __future__ import annotations

import math

import torch
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

import envs
from agents.tiny_base import tiny_base_path
from agents.vlm import load_processor

PROMPTS, GENERATIONS, STEPS = 4, 4, 2


class _Spy:
    """Wraps the reward function: records what TRL passed and what it got back."""

    def __init__(self, inner):
        self.inner, self.__name__, self.calls = inner, inner.__name__, []

    def __call__(self, prompts, completions, **kwargs):
        rewards = self.inner(prompts, completions, **kwargs)
        self.calls.append({"completions": completions, "scene": kwargs.get("scene"), "rewards": rewards})
        return rewards


def test_grpo_trainer_trains_two_steps_on_env_rewards(tmp_path):
    torch.manual_seed(0)
    data_dir = envs.export_dataset("TopBlockXOnly-v0", PROMPTS, 0, tmp_path / "dataset")
    import datasets

    dataset = datasets.load_from_disk(str(data_dir))
    path = str(tiny_base_path())
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    processor = load_processor(path)
    # TRL aligns mm_token_type_ids with left-padded prompts; a processor passed in must pad left too.
    processor.tokenizer.padding_side = "left"
    reward = _Spy(envs.reward_function("TopBlockXOnly-v0"))

    config = GRPOConfig(
        output_dir=str(tmp_path / "trl"), per_device_train_batch_size=PROMPTS // STEPS * GENERATIONS,
        num_generations=GENERATIONS, max_completion_length=12, max_steps=STEPS, learning_rate=5e-2,
        lr_scheduler_type="constant", weight_decay=0.0, beta=0.0, temperature=1.0, top_p=1.0, top_k=0,
        activation_checkpointing=False, bf16=False, fp16=False, use_cpu=True, seed=0, shuffle_dataset=False,
        report_to="none", save_strategy="no", eval_strategy="no", logging_steps=1, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    snapshot = Snapshot()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=processor, peft_config=lora, callbacks=[snapshot])
    trainer.train()

    assert trainer.state.global_step == STEPS
    assert reward.calls, "TRL never called the reward function"
    scenes = set(dataset["scene"])
    for call in reward.calls:
        assert len(call["scene"]) == len(call["completions"]) == len(call["rewards"])
        assert set(call["scene"]) <= scenes
        assert all(isinstance(r, float) and math.isfinite(r) for r in call["rewards"])
    # Not all rewards equal, or every advantage is 0 and the parameter check below says nothing.
    assert len({r for call in reward.calls for r in call["rewards"]}) > 1
    after = dict(trainer.model.named_parameters())
    assert snapshot.before and all("lora_" in n and "visual" not in n for n in snapshot.before)
    assert any(not torch.equal(p, after[n].detach()) for n, p in snapshot.before.items())
