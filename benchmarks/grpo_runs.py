"""The two timed GRPO runs of ``trainer_vs_trl.py``, each in its own worker subprocess.

:func:`run_ours` runs this project's trainer, :func:`run_trl` TRL's ``GRPOTrainer``, on the
same model, scenes, LoRA adapter and step configuration; :func:`worker` times one of them and
writes its result JSON for the parent process. What is the same, what differs, and how
step time and peak memory are measured: the docstring of ``trainer_vs_trl.py``.

The per-phase timers are wrapped around both trainers' own methods, so this module reaches
into their internals on purpose (our ``Trainer``'s ``_setup``, ``_backward``, ``_log`` and
``_scenes``, ``EnvPool``'s env table; TRL's ``_generate_single_turn`` and
``_get_per_token_logps_and_entropies``): a benchmark of where a step's time goes.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import tempfile
import time
from collections import defaultdict
from typing import Any

from measure import PeakMemory, Timers, cuda_available, cuda_sync

__all__ = ["run_ours", "run_trl", "worker", "TARGET_MODULES"]

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _device(args) -> str:
    return args.device or ("cuda" if cuda_available() else "cpu")


def _load_agent(args):
    from agents.vlm import VLMAgent

    return VLMAgent.from_pretrained(args.model, load_in_4bit=args.load_in_4bit, device=_device(args))


def _train_config(args, output_dir: str):
    from training.config import TrainConfig

    return TrainConfig(
        model=args.model, env_id=args.env_id, objective="grpo", group_size=args.group_size,
        prompts_per_step=args.prompts, grad_accum_steps=1, max_new_tokens=args.max_new_tokens,
        temperature=1.0, top_p=1.0, learning_rate=args.learning_rate, lr_schedule="constant",
        max_steps=1 + args.steps, max_grad_norm=1.0, weight_decay=0.0, clip_eps_low=0.2, clip_eps_high=0.2,
        loss_normalisation="tokens", kl_coef=0.0, skip_degenerate_groups=args.skip_degenerate_groups,
        lora_r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0, target_modules=list(TARGET_MODULES),
        train_vision=False, load_in_4bit=args.load_in_4bit, device=_device(args), seed=args.seed,
        eval_every=0, eval_episodes=0, save_every=0, log_every=1, output_dir=output_dir)


def _lora_config(args):
    from peft import LoraConfig

    from training.lora_targets import lora_target_regex

    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0,
                      target_modules=lora_target_regex(TARGET_MODULES, False))


def _profiler(args, timers: Timers):
    """cProfile over the timed steps (after the warm-up step), when ``--profile``."""
    if not args.profile:
        return None
    prof = cProfile.Profile()
    original = timers.step_end

    def step_end():
        original()
        if len(timers.step_ends) == 1:
            prof.enable()

    timers.step_end = step_end
    return prof


def _profile_text(prof) -> str:
    if prof is None:
        return ""
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(45)
    return out.getvalue()


def run_ours(args, workdir: str) -> dict[str, Any]:
    """Our trainer, one run of ``1 + steps`` GRPO steps; timestamps at each step's log call."""
    import torch

    from training.rollouts import EnvPool
    from training.trainer import Trainer

    timers = Timers()
    prof = _profiler(args, timers)
    records: list[dict[str, Any]] = []

    class TimedPool(EnvPool):
        def get(self, env_id, slot=0):
            fresh = (env_id, slot) not in self._envs
            env = super().get(env_id, slot)
            if fresh:
                timers.wrap(env, "reset", "env")
                timers.wrap(env.unwrapped, "judge", "env")
            return env

    class BenchTrainer(Trainer):
        def _setup(self):
            super()._setup()
            timers.wrap(self._agent.backend, "generate", "generate")
            timers.wrap(self._agent, "completion_logprobs", "train forward")
            timers.wrap(self.optimizer, "step", "optimizer")

        def _backward(self, *a, **kw):
            # loss + backward = _backward's time minus the forward's (timed inside it)
            before = timers.current["train forward"]
            t0 = time.perf_counter()
            try:
                return super()._backward(*a, **kw)
            finally:
                cuda_sync()
                spent = time.perf_counter() - t0 - (timers.current["train forward"] - before)
                timers.current["loss + backward"] += spent

        def _log(self, writer, path, metrics):  # noqa: D102  (an instance method here: it records the step end)
            Trainer._log(writer, path, metrics)
            records.append(dict(metrics))
            timers.step_end()

    agent = _load_agent(args)
    trainer = BenchTrainer(_train_config(args, os.path.join(workdir, "run")), agent=agent)
    trainer.pool = TimedPool(trainer.config.env_kwargs)
    memory = PeakMemory()
    rss_before = memory.rss_mb()
    memory.start()
    trainer.train(progress=False)
    peak = memory.peak_mb()
    profile = _profile_text(prof)
    lengths = [r.get("completion_length", float("nan")) for r in records[1:]]
    return dict(trainer="ours", timers=timers, peak_mb=peak, rss_before_mb=rss_before,
                memory_method=memory.method, completion_length=sum(lengths) / max(len(lengths), 1),
                extra={"groups_used (mean)": sum(r.get("groups_used", 0) for r in records[1:]) / max(len(records) - 1, 1),
                       "degenerate_fraction (mean)": sum(r.get("degenerate_fraction", 0) for r in records[1:])
                       / max(len(records) - 1, 1)},
                threads=torch.get_num_threads(), profile=profile)


def _scenes(args) -> list[tuple[str, int]]:
    """The (env id, seed) of every scene our trainer draws, step by step: TRL gets the same scenes."""
    import tempfile as _tf

    from training.trainer import Trainer

    scenes = []
    with _tf.TemporaryDirectory() as tmp:
        planner = Trainer(_train_config(args, tmp))
        for step in range(1, args.steps + 2):
            env_ids, seeds, _ = planner._scenes(step, args.prompts)
            scenes += list(zip(env_ids, seeds))
        planner.pool.close()
    return scenes


def run_trl(args, workdir: str) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same model, scenes, LoRA and step configuration."""
    import gymnasium as gym
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import envs  # noqa: F401  (registers the ids)
    from agents.backends.hf import to_pil
    from agents.chat import chat_messages

    timers = Timers()
    prof = _profiler(args, timers)
    cpu = _device(args) == "cpu"

    # The dataset: the scenes our trainer would draw, as conversational prompts with their image.
    rows, made = [], {}
    for env_id, seed in _scenes(args):
        env = made.setdefault(env_id, gym.make(env_id))
        obs, _ = env.reset(seed=seed)
        rows.append({"prompt": chat_messages(obs["prompt"]),
                     "image": to_pil(obs["image"]), "env_id": env_id, "seed": int(seed)})
    dataset = Dataset.from_list(rows)
    lengths: list[int] = []

    def env_reward(prompts, completions, env_id, seed, completion_ids=None, **_):
        """Score each completion with the environment: reset on the row's seed (once per group), then judge."""
        with timers.phase("env"):
            rewards, last = [], None
            for completion, eid, s in zip(completions, env_id, seed, strict=True):
                env = made.setdefault(eid, gym.make(eid))
                if (eid, s) != last:
                    env.reset(seed=int(s))
                    last = (eid, s)
                text = completion if isinstance(completion, str) else completion[-1]["content"]
                if isinstance(text, list):  # structured content blocks
                    text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
                rewards.append(float(env.unwrapped.judge(text)[0]))
        if completion_ids is not None:
            lengths.extend(len(c) for c in completion_ids)
        return rewards

    agent = _load_agent(args)
    model, processor = agent.model, agent.processor
    # TRL loads its own processor with left padding; a processor passed in must be set up the same way
    # (the forward pass aligns the processor's mm_token_type_ids with left-padded prompt ids).
    processor.tokenizer.padding_side = "left"

    config = GRPOConfig(
        output_dir=os.path.join(workdir, "trl"),
        per_device_train_batch_size=args.prompts * args.group_size,  # TRL counts completions
        gradient_accumulation_steps=1,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0,
        loss_type="bnpo", beta=0.0, epsilon=0.2, num_iterations=1, scale_rewards="group",
        max_steps=1 + args.steps,
        shuffle_dataset=False,
        gradient_checkpointing=args.trl_gradient_checkpointing,
        bf16=False, fp16=False,
        use_cpu=cpu,
        seed=args.seed,
        report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, log_completions=False,
        dataloader_num_workers=0,
    )

    class StepEnd(TrainerCallback):
        def on_pre_optimizer_step(self, *a, **kw):
            cuda_sync()
            self._t = time.perf_counter()

        def on_optimizer_step(self, *a, **kw):
            cuda_sync()
            timers.current["optimizer"] += time.perf_counter() - self._t

        def on_step_end(self, *a, **kw):
            timers.step_end()

    trainer = GRPOTrainer(model=model, reward_funcs=env_reward, args=config, train_dataset=dataset,
                          processing_class=processor, peft_config=_lora_config(args), callbacks=[StepEnd()])
    timers.wrap(trainer, "_generate_single_turn", "generate")
    timers.wrap(trainer, "_get_per_token_logps_and_entropies", "train forward")
    timers.wrap(trainer.accelerator, "backward", "loss + backward")
    memory = PeakMemory()
    rss_before = memory.rss_mb()
    memory.start()
    trainer.train()
    peak = memory.peak_mb()
    profile = _profile_text(prof)
    timed = lengths[args.prompts * args.group_size:]
    return dict(trainer="TRL", timers=timers, peak_mb=peak, rss_before_mb=rss_before, memory_method=memory.method,
                completion_length=sum(timed) / max(len(timed), 1), extra={}, threads=torch.get_num_threads(),
                profile=profile)


def worker(args) -> None:
    """Run the trainer ``args.worker`` names (``"ours"`` / ``"trl"``) and write its result JSON to ``args.result``.

    Raises:
        RuntimeError: the trainer ended fewer than ``1 + args.steps`` steps.
    """
    import torch

    from envs.atomic import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="trainer_vs_trl-") as workdir:
        result = (run_ours if args.worker == "ours" else run_trl)(args, workdir)
    timers: Timers = result.pop("timers")
    ends = timers.step_ends
    if len(ends) < args.steps + 1:
        raise RuntimeError(f"{result['trainer']}: expected {args.steps + 1} step ends, got {len(ends)}")
    intervals = [b - a for a, b in zip(ends[: args.steps], ends[1: args.steps + 1])]
    phases = defaultdict(float)
    for snap in timers.steps[1: args.steps + 1]:
        for k, v in snap.items():
            phases[k] += v / args.steps
    result.update(step_times=intervals, step_s=sum(intervals) / len(intervals), phases=dict(phases),
                  device=_device(args) + (f" ({torch.cuda.get_device_name()})" if cuda_available() else ""))
    write_json_atomic(args.result, result, indent=None)
