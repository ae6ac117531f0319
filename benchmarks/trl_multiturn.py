"""Multi-turn GRPO step (``TopBlockXOnly-Retry-v0``) through this project's trainer and through TRL's ``GRPOTrainer``.

Issue 12 asks for the multi-turn step's time and peak memory against single-turn at the same
number of generated tokens, and against TRL's ``GRPOTrainer`` where TRL can express the same
multi-turn run. This script runs, each in its own subprocess (separate peak-memory figures),
one after another, on the same model, processor, scenes, LoRA adapter and step configuration:

* ``ours``: :class:`training.Trainer` on the retry run: up to K attempts on the initial scene;
  after a failed attempt the policy sees the result image and one sentence (``feedback
  outcome``) and answers again; every turn is its own chat replaying ``--max-history-turns``
  earlier turns (their images included); the loss sees the generated tokens only.
* ``TRL``: ``GRPOTrainer`` with a ``rollout_func`` that plays the same episodes (the same env
  ids, seeds and env code, one env per trajectory) and returns, per trajectory, one sequence:
  the turn-1 prompt (image and prompt, TRL's own tokenisation), then every answer as sampled,
  with the env's next user turn (the feedback sentence and the retry instruction, as text)
  appended between answers and masked out of the loss with ``env_mask``.

plus, with ``--settings single,retry`` (the default), the single-turn reference of each trainer
(``TopBlockXOnly-v0``, ``--single-group-size`` completions per scene, default 2 G: about as many
generated tokens as the retry step), through the same code (TRL: the same ``rollout_func``,
which is then TRL's own generation of one turn plus the env's judgement).

What TRL 1.16 can and cannot express (README, "Multi-turn training", with the line numbers of
``trl/trainer/grpo_trainer.py``): a ``rollout_func`` returns ``prompt_ids``, ``completion_ids``,
``logprobs`` and ``env_mask`` (env tokens masked out of the loss), but no images: the loss forward's
``pixel_values`` come from the dataset prompt alone, so a feedback image's placeholder tokens inside
``completion_ids`` make the forward raise ("Image features and image tokens do not match", checked
on ``tiny-base``); the tool path (``environment_factory``), the only one where images enter after the
prompt, needs a tool-calling chat template (``tiny-base``'s has none: GRPOTrainer raises) and cannot
end an episode at its first success. So the TRL row is a variant: the same episodes, rewards,
answers and feedback *sentences*, but no feedback image; later turns are text only, and the whole
trajectory is one sequence (full history: ``max_history_turns`` has no counterpart). This repo's
trainer cannot drop the later turns' images (every user turn of :func:`agents.chat.chat_messages`
carries one), so its row is the real run (``--feedback outcome``, default). What differs, besides that:

* rows: ours trains one row per turn (a later turn's row is its whole chat, images included; the
  turn-1 rows of a group share one prompt); TRL one row per trajectory (prompt + all answers +
  feedback text), its prompt and image processed once per trajectory (G times per scene);
* context: ours replays ``--max-history-turns`` earlier turns (default null: all, the context TRL's
  sequence holds); TRL always all of them;
* sampling: both sample at temperature 1, top-p 1, no top-k, at most ``--max-new-tokens`` tokens per
  turn, but from their own generators (ours: its ``hf`` backend, seeded per step; TRL:
  ``_generate_single_turn``, the trainer's own transformers generation, called from the
  ``rollout_func`` for every turn, the later turns' prompts being the concatenated ids without
  re-tokenisation), so the episodes' answers, turn counts and generated tokens differ: compare
  seconds per 1,000 generated tokens, not seconds per step;
* the objective is the same: token-level clipped surrogate (eps 0.2), group-normalised trajectory
  return (the final attempt's reward, ours' ``return_type`` default for retry) on every generated
  token, normalised by the batch's generated tokens (ours ``loss_normalisation=tokens``, TRL
  ``loss_type="bnpo"``), no KL, one update per batch, AdamW, constant lr, grad-norm clip 1; all-equal
  groups are trained (ours ``skip_degenerate_groups`` off, as TRL), no gradient checkpointing;
* ``rollout (s)``: ours the rollout loop (``time_rollout_s``), TRL the ``rollout_func`` call (its
  chat template and image processing of the prompts included); both include the env's work.

Step time: ``1 + --steps`` optimizer steps, timestamps at each step's end (ours: its metrics log
call; TRL: ``on_step_end``), the mean over the ``--steps`` intervals after the warm-up step. Peak
memory: on CPU the peak resident set over the training steps (``VmHWM`` reset after loading), on
CUDA ``torch.cuda.max_memory_allocated`` (see ``benchmarks/measure.py``).

    python benchmarks/trl_multiturn.py                      # P=2 x G=4, K=3, M=16, 3 timed steps (+1), 4 runs
    python benchmarks/trl_multiturn.py --settings retry --only trl --steps 1     # smoke test of the TRL side
    python benchmarks/trl_multiturn.py --threads 1 --json runs/trl_multiturn.json

On a machine shared with other jobs use ``--threads 1`` (see ``trainer_vs_trl.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(pathlib.Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from measure import PeakMemory, Timers, cuda_available, cuda_sync, run_worker  # noqa: E402

SETTINGS = {"single": "TopBlockXOnly-v0", "retry": "TopBlockXOnly-Retry-v0"}
TRAINERS = {"ours": "this trainer", "trl": "TRL GRPOTrainer"}
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- the worker side ---------------------------------------------------------------------------------


def _device(args) -> str:
    return args.device or ("cuda" if cuda_available() else "cpu")


def _group_size(args) -> int:
    return args.group_size if args.setting == "retry" else (args.single_group_size or 2 * args.group_size)


def _env_kwargs(args) -> dict[str, Any]:
    return {"max_attempts": args.max_attempts, "feedback": args.feedback} if args.setting == "retry" else {}


def _train_config(args, output_dir: str):
    from training.config import TrainConfig

    return TrainConfig(
        model=args.model, env_id=SETTINGS[args.setting], objective="grpo", group_size=_group_size(args),
        prompts_per_step=args.prompts, grad_accum_steps=1, max_new_tokens=args.max_new_tokens,
        temperature=1.0, top_p=1.0, learning_rate=args.learning_rate, lr_schedule="constant",
        max_steps=1 + args.steps, max_grad_norm=1.0, weight_decay=0.0, clip_eps_low=0.2, clip_eps_high=0.2,
        loss_normalisation="tokens", kl_coef=0.0, skip_degenerate_groups=False, advantage="trajectory",
        return_type="final", max_history_turns=args.max_history_turns, env_kwargs=_env_kwargs(args),
        lora_r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0, target_modules=list(TARGET_MODULES),
        train_vision=False, device=_device(args), seed=args.seed,
        eval_every=0, eval_episodes=0, save_every=0, log_every=1, output_dir=output_dir)


def _wrap_env(timers: Timers, env) -> None:
    """Time an env's work (reset; step for a multi-step env, judge for a single-step one) as ``env``."""
    timers.wrap(env, "reset", "env")
    if getattr(env.unwrapped, "interaction", "single") == "single":
        timers.wrap(env.unwrapped, "judge", "env")
    else:
        timers.wrap(env, "step", "env")


def run_ours(args, workdir: str) -> dict[str, Any]:
    """This project's trainer, ``1 + steps`` GRPO steps; a timestamp at each step's log call."""
    import torch

    from agents.vlm import VLMAgent
    from training.rollouts import EnvPool
    from training.trainer import Trainer

    timers = Timers()
    records: list[dict[str, Any]] = []

    class TimedPool(EnvPool):
        def get(self, env_id, slot=0):
            fresh = (env_id, slot) not in self._envs
            env = super().get(env_id, slot)
            if fresh:
                _wrap_env(timers, env)
            return env

    class BenchTrainer(Trainer):
        def _setup(self):
            super()._setup()
            timers.wrap(self._agent.backend, "generate", "generate")
            timers.wrap(self._agent, "completion_logprobs", "train forward")
            timers.wrap(self.optimizer, "step", "optimizer")

        def _backward(self, *a, **kw):
            before = timers.current["train forward"]
            t0 = time.perf_counter()
            try:
                return super()._backward(*a, **kw)
            finally:
                cuda_sync()
                timers.current["loss + backward"] += time.perf_counter() - t0 - (timers.current["train forward"] - before)

        def _log(self, writer, path, metrics):  # noqa: D102  (records the step end)
            Trainer._log(writer, path, metrics)
            records.append(dict(metrics))
            timers.current["rollout"] += metrics.get("time_rollout_s", 0.0)
            timers.step_end()

    config = _train_config(args, os.path.join(workdir, "run"))
    agent = VLMAgent.from_pretrained(args.model, device=_device(args), max_history_turns=config.max_history_turns)
    trainer = BenchTrainer(config, agent=agent)
    trainer.pool = TimedPool(config.env_kwargs)
    memory = PeakMemory()
    rss_before = memory.rss_mb()
    memory.start()
    trainer.train(progress=False)
    peak = memory.peak_mb()
    per_step = [{"tokens": r["tokens_per_s"] * r["time_rollout_s"], "turns": r.get("turns_per_trajectory", 1.0),
                 "reward": r.get("reward_mean", float("nan"))} for r in records]
    return dict(timers=timers, peak_mb=peak, rss_before_mb=rss_before, memory_method=memory.method,
                per_step=per_step, threads=torch.get_num_threads())


def _scenes(args) -> list[tuple[str, int]]:
    """The (env id, seed) of every scene our trainer draws, step by step: TRL gets the same scenes."""
    from training.trainer import Trainer

    scenes = []
    with tempfile.TemporaryDirectory() as tmp:
        planner = Trainer(_train_config(args, tmp))
        for step in range(1, args.steps + 2):
            env_ids, seeds, _ = planner._scenes(step, args.prompts)
            scenes += list(zip(env_ids, seeds))
        planner.pool.close()
    return scenes


def _image_key(image) -> str:
    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(np.asarray(image.convert("RGB"))).tobytes()).hexdigest()


def _prompt_image(prompt: list[dict[str, Any]]):
    for message in prompt:
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if isinstance(part, dict) and part.get("type") == "image" and part.get("image") is not None:
                    return part["image"]
    raise ValueError("rollout_func: a prompt without its image")


def _next_turn_template(processor) -> tuple[str, str]:
    """``(head, tail)``: the chat text that follows an assistant turn's end-of-turn token up to the next
    assistant turn's generation prompt is ``head + PROMPT + tail`` for a text-only user turn ``PROMPT``
    (rendered once by the processor's own chat template, with a sentinel prompt)."""
    eos, sentinel = processor.tokenizer.eos_token, "\x00PROMPT\x00"
    base = [{"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}]}]
    before = processor.apply_chat_template(base, tokenize=False)
    after = processor.apply_chat_template(base + [{"role": "user", "content": [{"type": "text", "text": sentinel}]}],
                                          tokenize=False, add_generation_prompt=True)
    if not after.startswith(before) or eos not in before or after.count(sentinel) != 1:
        raise RuntimeError("the chat template is not prefix-preserving: cannot append a user turn by concatenation")
    head, tail = after[len(before):].split(sentinel)
    return before[before.rindex(eos) + len(eos):] + head, tail


def _row_fields(fields: dict[str, Any], n_rows: int, rows: list[int], lengths: list[int]) -> dict[str, Any]:
    """The multimodal generation inputs of ``rows`` (TRL ``_tokenize_prompts``' fields), their per-token
    fields extended with zeros (text) to each row's new length."""
    import torch

    out: dict[str, Any] = {}
    grid = fields.get("image_grid_thw")
    if grid is not None:
        grid = torch.as_tensor(grid)
        pixels = torch.as_tensor(fields["pixel_values"])
        per_row = len(grid) // n_rows  # images per prompt (one here)
        sizes = grid.prod(-1).tolist()
        starts = [0]
        for s in sizes:
            starts.append(starts[-1] + s)
        out["pixel_values"] = torch.cat([pixels[starts[r * per_row]:starts[(r + 1) * per_row]] for r in rows])
        out["image_grid_thw"] = torch.cat([grid[r * per_row:(r + 1) * per_row] for r in rows])
    for key in ("mm_token_type_ids", "token_type_ids"):
        if key in fields:
            out[key] = [list(fields[key][r]) + [0] * (n - len(fields[key][r])) for r, n in zip(rows, lengths)]
    return out


def run_trl(args, workdir: str) -> dict[str, Any]:
    """TRL's GRPOTrainer with a ``rollout_func`` that plays the episodes (see the module docstring)."""
    import gymnasium as gym
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import envs  # noqa: F401  (registers the ids)
    from agents.backends.hf import to_pil
    from agents.chat import chat_messages
    from agents.vlm import VLMAgent
    from training.lora_targets import lora_target_regex

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from peft import LoraConfig

    timers = Timers()
    env_id, env_kwargs, group = SETTINGS[args.setting], _env_kwargs(args), _group_size(args)
    cpu = _device(args) == "cpu"

    # The dataset: the scenes our trainer would draw, as conversational prompts with their image.
    rows, scene_of = [], {}
    probe = gym.make(env_id, **env_kwargs)
    for eid, seed in _scenes(args):
        obs, _ = probe.reset(seed=seed)
        image = to_pil(obs["image"])
        scene_of[_image_key(image)] = (eid, int(seed))
        rows.append({"prompt": chat_messages(obs["prompt"]), "image": image, "env_id": eid, "seed": int(seed)})
    probe.close()
    dataset = Dataset.from_list(rows)

    agent = VLMAgent.from_pretrained(args.model, device=_device(args))
    model, processor = agent.model, agent.processor
    processor.tokenizer.padding_side = "left"  # as TRL sets its own processor
    tok = processor.tokenizer
    eos = tok.eos_token_id
    head, tail = _next_turn_template(processor)
    single = env_id == SETTINGS["single"]
    pool: list[Any] = []  # one env per trajectory of a step, reused across steps
    per_step: list[dict[str, float]] = []

    def rollout_func(prompts, trainer):
        """Play each row's episode; one sequence per trajectory, env turns masked (``env_mask`` 0)."""
        t0 = time.perf_counter()
        n = len(prompts)
        while len(pool) < n:
            env = gym.make(env_id, **env_kwargs)
            _wrap_env(timers, env)
            pool.append(env)
        scenes = [scene_of[_image_key(_prompt_image(p))] for p in prompts]
        # One env per trajectory, reset on its scene's seed; a single-step group shares one (as ours).
        slot = [scenes.index(sc) if single else r for r, sc in enumerate(scenes)]
        for r in sorted(set(slot)):
            pool[r].reset(seed=scenes[r][1])
        prompt_ids, images, fields = trainer._tokenize_prompts(prompts)
        prompt_ids = [list(ids) for ids in prompt_ids]
        completion = [[] for _ in range(n)]
        mask = [[] for _ in range(n)]
        returns, turns = [0.0] * n, [0] * n
        # Turn 1: TRL's own generation of the (repeated) prompts, as its default path does.
        answers, _ = trainer._generate_single_turn(prompt_ids, images, fields, trainer.num_generations)
        active = list(range(n))
        while active:
            still = []
            for r, answer in zip(active, answers):
                answer = list(answer)
                completion[r] += answer
                mask[r] += [1] * len(answer)
                turns[r] += 1
                text = tok.decode(answer, skip_special_tokens=True)
                if single:  # as our rollout loop: a single-step group is judged on its one reset env
                    reward, done = pool[slot[r]].unwrapped.judge(text)[0], True
                else:
                    obs, reward, terminated, truncated, _ = pool[r].step(text)
                    done = terminated or truncated
                returns[r] = float(reward)  # return_type "final": the last attempt's reward
                if not done:
                    suffix = ([] if answer and answer[-1] == eos else [eos]) + tok.encode(
                        head + obs["prompt"] + tail, add_special_tokens=False)
                    completion[r] += suffix
                    mask[r] += [0] * len(suffix)
                    still.append(r)
            active = still
            if active:
                ids = [prompt_ids[r] + completion[r] for r in active]
                answers, _ = trainer._generate_single_turn(
                    ids, [images[r] for r in active] if images else None,
                    _row_fields(fields, n, active, [len(i) for i in ids]), 1)
        per_step.append({"tokens": float(sum(sum(m) for m in mask)), "turns": sum(turns) / n,
                         "reward": sum(returns) / n, "rollout_s": time.perf_counter() - t0})
        timers.current["rollout"] += time.perf_counter() - t0
        return {"prompt_ids": prompt_ids, "completion_ids": completion, "logprobs": None, "env_mask": mask,
                "episode_return": returns}

    def episode_reward(prompts, completions, episode_return, **_):
        return [float(x) for x in episode_return]

    config = GRPOConfig(
        output_dir=os.path.join(workdir, "trl"),
        per_device_train_batch_size=args.prompts * group,  # TRL counts completions (here: trajectories)
        gradient_accumulation_steps=1,
        num_generations=group,
        max_completion_length=args.max_new_tokens,  # per generate call: per turn here
        temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0,
        loss_type="bnpo", beta=0.0, epsilon=0.2, num_iterations=1, scale_rewards="group",
        max_steps=1 + args.steps, shuffle_dataset=False, gradient_checkpointing=False,
        bf16=False, fp16=False, use_cpu=cpu, seed=args.seed,
        report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, log_completions=False, dataloader_num_workers=0,
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

    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_r, lora_dropout=0.0,
                      target_modules=lora_target_regex(TARGET_MODULES, False))
    trainer = GRPOTrainer(model=model, reward_funcs=episode_reward, args=config, train_dataset=dataset,
                          processing_class=processor, peft_config=lora, callbacks=[StepEnd()],
                          rollout_func=rollout_func)
    timers.wrap(trainer, "_generate_single_turn", "generate")
    timers.wrap(trainer, "_get_per_token_logps_and_entropies", "train forward")
    timers.wrap(trainer.accelerator, "backward", "loss + backward")
    memory = PeakMemory()
    rss_before = memory.rss_mb()
    memory.start()
    trainer.train()
    peak = memory.peak_mb()
    for env in pool:
        env.close()
    return dict(timers=timers, peak_mb=peak, rss_before_mb=rss_before, memory_method=memory.method,
                per_step=per_step, threads=torch.get_num_threads())


def worker(args) -> None:
    """Run ``args.worker`` on ``args.setting``; write the result JSON to ``args.result``."""
    from collections import defaultdict

    import torch

    from envs.atomic import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="trl_multiturn-") as workdir:
        result = (run_ours if args.worker == "ours" else run_trl)(args, workdir)
    timers: Timers = result.pop("timers")
    ends, per_step = timers.step_ends, result.pop("per_step")
    if len(ends) < args.steps + 1 or len(per_step) < args.steps + 1:
        raise RuntimeError(f"{args.worker}: expected {args.steps + 1} steps, got {len(ends)} step ends and "
                           f"{len(per_step)} rollouts")
    intervals = [b - a for a, b in zip(ends[: args.steps], ends[1: args.steps + 1])]
    timed = per_step[1: args.steps + 1]
    phases: dict[str, float] = defaultdict(float)
    for snap in timers.steps[1: args.steps + 1]:
        for k, v in snap.items():
            phases[k] += v / args.steps
    mean = lambda key: sum(s[key] for s in timed) / len(timed)  # noqa: E731
    result.update(trainer=args.worker, setting=args.setting, group_size=_group_size(args),
                  step_times=intervals, step_s=sum(intervals) / len(intervals), phases=dict(phases),
                  tokens=mean("tokens"), turns=mean("turns"), reward=mean("reward"),
                  device=_device(args) + (f" ({torch.cuda.get_device_name()})" if cuda_available() else ""))
    write_json_atomic(args.result, result, indent=None)


# -- the parent: run every (setting, trainer), print the table ---------------------------------------


def _spawn(trainer: str, setting: str, argv: list[str], timeout: float) -> dict[str, Any]:
    return run_worker(str(pathlib.Path(__file__).resolve()), [*argv, "--worker", trainer, "--setting", setting],
                      f"trl_multiturn-{trainer}-{setting}", timeout, str(ROOT), TRL_EXPERIMENTAL_SILENCE="1")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def report(args, results: list[dict[str, Any]]) -> str:
    history = "all" if args.max_history_turns is None else args.max_history_turns
    out = [f"GRPO step, model={args.model}: retry = {SETTINGS['retry']} (K={args.max_attempts}, feedback "
           f"{args.feedback}; ours max_history_turns={history}; TRL: the same episodes, feedback as masked text, no "
           f"feedback image), P={args.prompts} x G={args.group_size}; single = {SETTINGS['single']}, P={args.prompts} x "
           f"G={args.single_group_size or 2 * args.group_size}; M={args.max_new_tokens} new tokens per turn, LoRA "
           f"r=alpha={args.lora_r}, lr={args.learning_rate}; {args.steps} timed steps after 1 warm-up",
           f"device: {results[0]['device']}, torch threads: {results[0]['threads']}", ""]
    mem_label = "peak GPU mem (MB)" if results[0]["device"].startswith("cuda") else "peak RSS (MB)"
    single = {r["trainer"]: r for r in results if r["setting"] == "single"}
    rows = []
    for r in results:
        per_1k = r["step_s"] / max(r["tokens"], 1e-9) * 1000
        base = single.get(r["trainer"])
        ratio = per_1k / (base["step_s"] / max(base["tokens"], 1e-9) * 1000) if base else float("nan")
        rows.append([TRAINERS[r["trainer"]], f"{r['setting']} ({r['group_size']}/scene)", f"{r['step_s']:.2f}",
                     f"{r['phases'].get('rollout', 0.0):.2f}", f"{r['tokens']:.0f}", f"{per_1k:.2f}",
                     "-" if r["setting"] == "single" or not base else f"{ratio:.2f}", f"{r['turns']:.2f}",
                     f"{r['peak_mb']:.0f}", f"{r['rss_before_mb']:.0f}"])
    out.append(_table(rows, ["trainer", "setting", "step (s)", "rollout (s)", "generated tokens / step",
                             "s per 1k generated tokens", "x single", "turns / trajectory", mem_label,
                             "RSS before (MB)"]))
    by = {(r["trainer"], r["setting"]): r for r in results}
    for setting in SETTINGS:
        ours, trl = by.get(("ours", setting)), by.get(("trl", setting))
        if ours and trl:
            per = lambda r: r["step_s"] / max(r["tokens"], 1e-9)  # noqa: E731
            out.append(f"{setting}: ours/TRL s per 1k generated tokens {per(ours) / per(trl):.2f}x, step time "
                       f"{ours['step_s'] / trl['step_s']:.2f}x, peak memory {ours['peak_mb'] / trl['peak_mb']:.2f}x")
    order = ["rollout", "generate", "env", "train forward", "loss + backward", "optimizer"]
    phases = sorted({k for r in results for k in r["phases"]}, key=lambda k: order.index(k) if k in order else 99)
    rows = [[TRAINERS[r["trainer"]], r["setting"], *[f"{r['phases'].get(k, 0.0):.3f}" for k in phases],
             f"{r['step_s'] - r['phases'].get('rollout', 0.0):.3f}", f"{r['step_s']:.3f}"] for r in results]
    out += ["", "where a step's time goes (s per step, mean of the timed steps; generate and env are inside rollout):",
            _table(rows, ["trainer", "setting", *phases, "step - rollout", "step"]),
            "", "mean return per trajectory (timed steps): " + "; ".join(
                f"{r['trainer']} {r['setting']} {r['reward']:.2f}" for r in results),
            "memory: " + "; ".join(f"{r['trainer']} {r['setting']}: {r['memory_method']}" for r in results)]
    return "\n".join(out)


def _history(value: str) -> int | None:
    if value.lower() in ("null", "none", "all"):
        return None
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or null")
    return n


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-base", help="'tiny-base' (default), 'tiny' or a local checkpoint")
    parser.add_argument("--settings", default="single,retry", help="comma-separated: single, retry (default both)")
    parser.add_argument("--only", choices=list(TRAINERS), help="run one trainer only")
    parser.add_argument("--prompts", "-P", type=int, default=2, help="scenes per step (default 2)")
    parser.add_argument("--group-size", "-G", type=int, default=4, help="trajectories per scene, retry (default 4)")
    parser.add_argument("--single-group-size", type=int, default=0,
                        help="completions per scene, single (default 2 x --group-size)")
    parser.add_argument("--max-attempts", "-K", type=int, default=3, help="retry attempts K (default 3)")
    parser.add_argument("--feedback", choices=["outcome", "image", "none"], default="outcome",
                        help="the env's feedback (default outcome); TRL gets its text only")
    parser.add_argument("--max-history-turns", type=_history, default=None,
                        help="ours: earlier turns replayed (default null: all, as TRL's one sequence)")
    parser.add_argument("--max-new-tokens", "-M", type=int, default=16, help="most tokens per turn (default 16)")
    parser.add_argument("--steps", "-N", type=int, default=3, help="timed steps after 1 warm-up step (default 3)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank = alpha (default 16)")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: torch's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker (default 3600)")
    parser.add_argument("--worker", choices=list(TRAINERS), help=argparse.SUPPRESS)
    parser.add_argument("--setting", choices=list(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.setting_list = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in args.setting_list if s not in SETTINGS]
    if unknown or not args.setting_list:
        parser.error(f"--settings takes a comma-separated subset of {list(SETTINGS)}; got {args.settings!r}")
    for name in ("prompts", "max_new_tokens", "steps", "lora_r", "max_attempts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.group_size < 2 or (args.single_group_size and args.single_group_size < 2):
        parser.error("group sizes must be >= 2 (advantages are relative to the group)")
    return args


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    trainers = [args.only] if args.only else list(TRAINERS)
    results = []
    for setting in args.setting_list:
        for trainer in trainers:
            print(f"{trainer} {setting} ...", file=sys.stderr, flush=True)
            result = _spawn(trainer, setting, argv, args.timeout)
            results.append(result)
            print(f"  {result['step_s']:.2f} s/step, {result['tokens']:.0f} generated tokens/step "
                  f"({result['process_s']:.0f} s with start-up)", file=sys.stderr, flush=True)
    print(report(args, results))
    if args.json:
        from envs.atomic import write_json_atomic

        write_json_atomic(args.json, {"args": {k: v for k, v in vars(args).items()}, "results": results}, indent=2)


if __name__ == "__main__":
    main()
