"""TRL's ``SFTTrainer`` reads an exported dataset as it is: prompt-completion, image, loss on the oracle answer.

Set-up as in ``test_trl_grpo.py`` (the shipped ``tiny-base``, :func:`agents.vlm.load_processor`, LoRA on the
language model, fp32 CPU).
"""

from __future__ import annotations

import math

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForImageTextToText
from trl import SFTConfig, SFTTrainer

import envs
from agents.tiny_base import tiny_base_path
from agents.vlm import load_processor


def test_sft_trainer_learns_the_exported_optimal_answers(tmp_path):
    torch.manual_seed(0)
    ds = datasets.load_from_disk(str(envs.export_dataset("SideBlockXY-v0", 4, 0, tmp_path / "dataset")))
    path = str(tiny_base_path())
    processor = load_processor(path)
    config = SFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=2, max_steps=2,
                       learning_rate=1e-2, max_length=None, activation_checkpointing=False, bf16=False,
                       use_cpu=True, seed=0, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = SFTTrainer(model=AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32), args=config,
                         train_dataset=ds, processing_class=processor,
                         peft_config=LoraConfig(r=4, lora_alpha=8,
                                                target_modules=["q_proj", "v_proj"]))

    batch = trainer.data_collator([dict(ds[0]), dict(ds[1])])
    assert batch["image_grid_thw"].shape[0] == 2  # one image per row, from the `image` column
    for row, labels in zip((ds[0], ds[1]), batch["labels"]):
        # Completion-only loss: the labelled tokens are the oracle answer and the end of the turn.
        learned = processor.tokenizer.decode(labels[labels != -100])
        assert learned.startswith(row["optimal_answer"] + "<|im_end|>"), learned

    result = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)
