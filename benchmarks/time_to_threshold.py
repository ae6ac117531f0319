"""Wall time until the greedy held-out reward beats the best constant answer: ours (hf, vllm) vs TRL.

Each in its own subprocess: ``hf``, this project's :class:`training.trainer.Trainer` with
``backend="hf"``; ``vllm``, the same with ``backend="vllm"``, run by ``--vllm-python`` (default
``.venv-vllm/bin/python``; skipped, with the reason, when absent); ``trl``, TRL's ``GRPOTrainer``
on ``envs.export_dataset(...)`` scenes rewarded by ``envs.reward_function(env_id)``.

Settings: one :class:`training.config.TrainConfig`, ``--config`` (default ``quickstart``, what
``cubeworld train`` runs: ``tiny-base``, ``TopBlockXOnly-v0``, 4 scenes x 16 completions per step,
lr 2e-3 cosine over ``max_steps``, KL 0.05, 16 new tokens, temperature 1, LoRA r = alpha = 16 on
the LM's q/k/v/o/gate/up/down) + ``--set KEY=VALUE``, ``max_steps = --max-steps``. TRL's
``GRPOConfig`` follows it field by field (:func:`grpo_config`): ``num_generations = group_size``,
``per_device_train_batch_size = prompts * group_size / grad_accum_steps`` (TRL 1.16 counts
completions; ``generation_batch_size`` = ``prompts * group_size``: one generation per optimizer
step), lr, schedule, warm-up, weight decay, grad clip, ``beta = kl_coef`` (both k3 against the
adapter-disabled base), ``loss_type="bnpo"`` (= ``tokens``), ``scale_rewards="group"``, epsilon
(low/high), ``num_iterations``, temperature/top_p/min_p, ``top_k=0``, ``max_completion_length``,
the LoRA config and target regex, fp32 (``bf16=False``), no gradient checkpointing, ``seed``.

Protocol:

1. Threshold: ``best_constant_answer(env_id, n_episodes=N, seed=1_000_000)`` then
   ``evaluate(ConstantAgent(answer), env_id, N, seed=1_000_000)``; the threshold is its
   bootstrap ``ci95[1]`` (N = ``--eval-episodes``, default 64). Computed once, in this process.
2. Every K = ``--eval-every`` steps (default 10), before training (step 0) and after the last
   step, each trainer's current policy is evaluated greedily (``eval_temperature=0``, the
   other ``eval_*`` fields of the config: at most 64 new tokens) on the same N held-out seeds
   by the same code, :func:`training.heldout.evaluate_envs` (:func:`evaluation.evaluate`):
   ours through its own ``eval_every`` / ``eval_episodes`` (the ``eval_reward`` rows of
   ``metrics.jsonl``); TRL's peft model wrapped in an ``agents.vlm.VLMAgent`` with the same
   greedy ``SamplingParams``, from a ``TrainerCallback``.
3. The clock counts training only. Ours: the cumulative ``time_step_s`` of ``metrics.jsonl``
   (scenes, rollouts, rewards, update; for vLLM also the adapter published to the engine),
   not model loading, evaluation, logging or checkpoints. TRL: the time from
   ``on_train_begin`` to each ``on_step_end`` (dataloader, generation, rewards, update, TRL's
   bookkeeping), paused while the callback evaluates.
4. A run stops at the first evaluation whose mean reward is > the threshold (ours: the
   ``metrics.jsonl`` row is written, then the loop is left; TRL: ``control.should_training_stop``),
   else after ``--max-steps``. Reported per (trainer, seed): the step and training seconds
   of that evaluation, or "not reached in S steps"; the last greedy reward with its 95% CI;
   training seconds per step. Per trainer: the mean over seeds (time to threshold only when
   every seed reached it), and the ratios hf/TRL and vllm/TRL of this one invocation.

Not matched: (1) our trainer skips groups whose rewards are all equal (no forward/backward,
no KL term; the scheduler still steps) and its ``tokens`` denominator counts the kept rows'
tokens only; TRL trains on them (zero advantage, but the KL term still pulls them to the
base, and their tokens count in the bnpo denominator), so with degenerate groups our step on
the informative groups is larger ("degenerate groups" column: ours ``degenerate_fraction``,
TRL ``frac_reward_zero_std``). (2) TRL's scenes are ``export_dataset`` seeds ``seed*n ..
seed*n+n-1`` (n = max_steps * prompts), shuffled; ours are drawn from ``(seed, step)``: same
distribution, different scenes, and different sampling seeds. (3) Old log-probabilities: ours
the rollout backend's (hf: ``generate``'s scores; vllm: TIS on, the project default), TRL's the
detached current ones (``num_iterations=1``). (4) The vllm run also generates its greedy
evaluations with the vLLM engine (same ``evaluate`` code and ``SamplingParams``).

    python benchmarks/time_to_threshold.py                          # quickstart, 200-step budget
    python benchmarks/time_to_threshold.py --trainers hf,trl --seeds 0,1,2 --json ttt.json
    OMP_NUM_THREADS=1 python benchmarks/time_to_threshold.py --max-steps 3 --eval-every 1 --eval-episodes 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EVAL_SEED = 1_000_000
TRAINERS = ("hf", "vllm", "trl")

from measure import cuda_sync  # noqa: E402  (benchmarks/ is this script's folder)


class _Reached(Exception):
    """Raised inside a trainer's loop once an evaluation beats the threshold."""


def train_config(args, trainer: str, seed: int, run_dir: pathlib.Path):
    """The run's TrainConfig: ``--config`` + ``--set``, the budget, greedy evaluation every K steps."""
    from training.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.config, args.set)
    return dataclasses.replace(
        cfg, backend="vllm" if trainer == "vllm" else "hf", seed=seed, max_steps=args.max_steps,
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, eval_seed=EVAL_SEED, eval_temperature=0.0,
        save_every=0, log_every=1, output_dir=str(run_dir))


def grpo_config(cfg, output_dir: str):
    """TRL's GRPOConfig matching ``cfg`` (see the module docstring)."""
    from trl import GRPOConfig

    if cfg.objective != "grpo" or cfg.loss_normalisation != "tokens" or cfg.env_mix:
        raise ValueError("TRL is matched for objective=grpo, loss_normalisation=tokens, one env only; got "
                         f"{cfg.objective}, {cfg.loss_normalisation}, env_mix={cfg.env_mix}")
    batch = cfg.prompts_per_step * cfg.group_size
    if batch % cfg.grad_accum_steps:
        raise ValueError(f"prompts_per_step * group_size ({batch}) must divide by grad_accum_steps")
    return GRPOConfig(
        output_dir=output_dir, per_device_train_batch_size=batch // cfg.grad_accum_steps,
        gradient_accumulation_steps=cfg.grad_accum_steps, num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        min_p=cfg.min_p or None, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_schedule,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        max_steps=cfg.max_steps, beta=cfg.kl_coef, loss_type="bnpo", scale_rewards="group",
        epsilon=cfg.clip_eps_low, epsilon_high=cfg.clip_eps_high, num_iterations=cfg.num_iterations,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=not _cuda(cfg), seed=cfg.seed,
        report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no", disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0)


def _cuda(cfg) -> bool:
    import torch

    return cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())


def _eval_row(step: int, train_s: float, reward: float, lo: float, hi: float) -> dict[str, float]:
    return {"step": step, "train_s": train_s, "reward": reward, "ci_low": lo, "ci_high": hi}


# -- workers (one trainer, one seed, in its own process) --------------------------------------------


def run_ours(cfg, threshold: float) -> dict[str, Any]:
    """Our Trainer with ``cfg``; stops after the first eval row above ``threshold``; reads metrics.jsonl."""
    from training.trainer import Trainer

    class StopAtThreshold(Trainer):
        def _log(self, writer, path, metrics):  # noqa: D102  (an instance method here)
            Trainer._log(writer, path, metrics)
            if metrics.get("eval_reward", float("-inf")) > threshold:
                raise _Reached

    trainer = StopAtThreshold(cfg)
    try:
        trainer.train(progress=False)
    except _Reached:
        trainer.pool.close()
    rows = [json.loads(line) for line in open(pathlib.Path(cfg.output_dir) / "metrics.jsonl") if line.strip()]
    step_s = {r["step"]: r["time_step_s"] for r in rows if "time_step_s" in r}
    evals = [_eval_row(r["step"], sum(t for s, t in step_s.items() if s <= r["step"]), r["eval_reward"],
                       r["eval_ci_low"], r["eval_ci_high"]) for r in rows if "eval_reward" in r]
    trained = [r for r in rows if "time_step_s" in r]
    return {"evals": evals, "steps": max(step_s, default=0),
            "degenerate_fraction": sum(r.get("degenerate_fraction", 0.0) for r in trained) / max(len(trained), 1)}


def run_trl(cfg, threshold: float) -> dict[str, Any]:
    """TRL's GRPOTrainer with the settings of ``cfg``; greedy evaluations from a callback, clock paused."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    import envs
    from agents.vlm import VLMAgent
    from training import heldout
    from training.lora_targets import lora_target_regex

    run_dir = pathlib.Path(cfg.output_dir)
    n = cfg.max_steps * cfg.prompts_per_step
    dataset = load_from_disk(str(envs.export_dataset(cfg.env_id, n=n, seed=cfg.seed * n,
                                                      out_dir=run_dir / "dataset", **cfg.env_kwargs)))
    torch.manual_seed(cfg.seed)
    agent = VLMAgent.from_pretrained(cfg.model, **cfg.agent_kwargs())
    processor = agent.processor
    processor.tokenizer.padding_side = "left"  # what TRL's own processor would have (see grpo_runs.run_trl)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=lora_target_regex(cfg.target_modules, cfg.train_vision))
    evals: list[dict[str, float]] = []
    clock = {"train_s": 0.0, "resume": 0.0}
    holder: dict[str, Any] = {}
    zero_std: list[float] = []

    def evaluate(step: int) -> float:
        model = holder["trainer"].model
        was_training = model.training
        model.eval()
        scorer = VLMAgent(model, processor, sampling=cfg.eval_sampling_params(), name_or_path=cfg.model)
        scorer.set_adapter(model.active_adapter)  # a VLMAgent with no active adapter generates with it disabled
        with torch.no_grad():
            ev = heldout.evaluate_envs(scorer, cfg)[cfg.env_id]
        model.train(was_training)
        evals.append(_eval_row(step, clock["train_s"], ev.mean_reward, *ev.ci95))
        return ev.mean_reward

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if evaluate(0) > threshold:
                raise _Reached
            clock["resume"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            cuda_sync()
            clock["train_s"] += time.perf_counter() - clock["resume"]
            step = state.global_step
            zero_std.append(holder["trainer"]._metrics["train"].get("frac_reward_zero_std", [float("nan")])[-1])
            if (cfg.eval_every and step % cfg.eval_every == 0) or step >= cfg.max_steps:
                if evaluate(step) > threshold:
                    control.should_training_stop = True
            clock["resume"] = time.perf_counter()
            return control

    trainer = GRPOTrainer(model=agent.model, reward_funcs=envs.reward_function(cfg.env_id, **cfg.env_kwargs),
                          args=grpo_config(cfg, str(run_dir / "trl")), train_dataset=dataset,
                          processing_class=processor, peft_config=lora, callbacks=[Clock()])
    holder["trainer"] = trainer
    try:
        trainer.train()
    except _Reached:
        pass
    return {"evals": evals, "steps": int(trainer.state.global_step),
            "degenerate_fraction": sum(zero_std) / len(zero_std) if zero_std else float("nan")}


def worker(args) -> None:
    import torch

    from envs.atomic import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = pathlib.Path(args.out) / f"{args.worker}-seed{args.worker_seed}"
    cfg = train_config(args, args.worker, args.worker_seed, run_dir)
    result = (run_trl if args.worker == "trl" else run_ours)(cfg, args.threshold)
    result.update(trainer=args.worker, seed=args.worker_seed, threads=torch.get_num_threads())
    write_json_atomic(args.result, result, indent=None)


# -- the parent: threshold, runs, table ----------------------------------------------------------


def threshold_of(args) -> dict[str, Any]:
    from agents.baselines import ConstantAgent
    from evaluation.best_constant import best_constant_answer
    from evaluation.evaluate import evaluate

    cfg = train_config(args, "hf", 0, pathlib.Path(args.out))
    kw = dict(n_episodes=args.eval_episodes, seed=EVAL_SEED, env_kwargs=cfg.env_kwargs)
    best = best_constant_answer(cfg.env_id, **kw)
    ev = evaluate(ConstantAgent(best.answer), cfg.env_id, **kw)
    return {"env_id": cfg.env_id, "answer": best.answer, "mean": ev.mean_reward, "ci95": list(ev.ci95),
            "threshold": ev.ci95[1], "config": dataclasses.asdict(cfg)}


def spawn(args, argv: list[str], name: str, seed: int, threshold: float) -> dict[str, Any]:
    python = sys.executable
    if name == "vllm":
        python = str(pathlib.Path(args.vllm_python) if pathlib.Path(args.vllm_python).is_absolute()
                     else ROOT / args.vllm_python)
        if not os.access(python, os.X_OK):
            return {"trainer": name, "seed": seed, "error": f"skipped: no interpreter at {python} (--vllm-python)"}
    out = pathlib.Path(args.out)
    run_dir, result, log = out / f"{name}-seed{seed}", out / f"{name}-seed{seed}.json", out / f"{name}-seed{seed}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # the Trainer refuses a folder holding a previous run
    result.unlink(missing_ok=True)
    cmd = [python, str(pathlib.Path(__file__).resolve()), *argv, "--worker", name, "--worker-seed", str(seed),
           "--threshold", repr(threshold), "--result", str(result)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=str(ROOT), env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0 or not result.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        print(f"  {name} seed {seed} failed ({rc}); last lines of {log}:\n{tail}", file=sys.stderr)
        return {"trainer": name, "seed": seed, "error": f"failed ({rc}), see {log}"}
    r = json.loads(result.read_text())
    r["process_s"] = time.perf_counter() - t0
    return r


def summarise(r: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Adds reached_step / reached_s (None if never > threshold), final eval, training s per step."""
    evals = r.get("evals") or []
    hit = next((e for e in evals if e["reward"] > threshold), None)
    train_s = max((e["train_s"] for e in evals), default=0.0)
    r.update(reached_step=hit and hit["step"], reached_s=hit and hit["train_s"], final=evals[-1] if evals else None,
             train_s=train_s, s_per_step=train_s / r["steps"] if r.get("steps") else float("nan"))
    return r


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def report(args, base: dict[str, Any], results: list[dict[str, Any]]) -> str:
    from trainer_vs_trl import _table

    cfg = base["config"]
    out = [f"time to threshold: model={cfg['model']}, env={base['env_id']}, {cfg['prompts_per_step']} scenes x "
           f"{cfg['group_size']} completions/step, lr {cfg['learning_rate']} {cfg['lr_schedule']} over "
           f"{args.max_steps} steps, kl {cfg['kl_coef']}, LoRA r={cfg['lora_r']} alpha={cfg['lora_alpha']}, "
           f"max_new_tokens {cfg['max_new_tokens']}, temperature {cfg['temperature']}; config {args.config}"
           + (f" + {' '.join(args.set)}" if args.set else ""),
           f"threshold: best constant {base['answer']} on {args.eval_episodes} held-out seeds from {EVAL_SEED}: "
           f"mean {base['mean']:.3f}, 95% CI [{base['ci95'][0]:.3f}, {base['ci95'][1]:.3f}] -> greedy eval "
           f"reward must exceed {base['threshold']:.3f}; greedy eval every {args.eval_every} steps", ""]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["trainer"], r["seed"], r["error"], "", "", "", "", "", ""])
            continue
        f = r["final"]
        reached = r["reached_step"] is not None
        rows.append([r["trainer"], r["seed"], r["reached_step"] if reached else f"not reached in {r['steps']} steps",
                     f"{r['reached_s']:.1f}" if reached else "-", r["steps"],
                     f"{f['reward']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}] @ {f['step']}" if f else "-",
                     f"{r['s_per_step']:.2f}", f"{r['degenerate_fraction']:.2f}", f"{r['process_s']:.0f}"])
    out.append(_table(rows, ["trainer", "seed", "steps to threshold", "train s to threshold", "steps run",
                             "final greedy reward [95% CI] @ step", "train s/step", "degenerate groups",
                             "process s"]))
    means, by = [], {}
    for name in [t for t in TRAINERS if t in args.trainers]:
        ok = [r for r in results if r["trainer"] == name and "error" not in r]
        if not ok:
            continue
        all_hit = all(r["reached_step"] is not None for r in ok)
        by[name] = {"reached_s": _mean([r["reached_s"] for r in ok]) if all_hit else None,
                    "s_per_step": _mean([r["s_per_step"] for r in ok])}
        n_hit = sum(r["reached_step"] is not None for r in ok)
        means.append([name, f"{n_hit}/{len(ok)}",
                      f"{_mean([r['reached_step'] for r in ok]):.1f}" if all_hit else "-",
                      f"{by[name]['reached_s']:.1f}" if all_hit else "-",
                      f"{_mean([r['final']['reward'] for r in ok if r['final']]):.3f}",
                      f"{by[name]['s_per_step']:.2f}"])
    if means:
        out += ["", "mean over seeds (time to threshold only when every seed reached it):",
                _table(means, ["trainer", "reached", "steps to threshold", "train s to threshold",
                               "final greedy reward", "train s/step"])]
    for name in ("hf", "vllm"):
        if name in by and "trl" in by:
            a, b = by[name], by["trl"]
            ttt = (f"{a['reached_s'] / b['reached_s']:.2f}x" if a["reached_s"] is not None and b["reached_s"]
                   else "n/a (threshold not reached by every seed of both)")
            out.append(f"{name}/TRL: time to threshold {ttt}; training s/step {a['s_per_step'] / b['s_per_step']:.2f}x")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", default="hf,vllm,trl", help="comma-separated subset of hf,vllm,trl (default all)")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument("--max-steps", type=int, default=200, help="step budget per run (default 200)")
    p.add_argument("--eval-every", type=int, default=10, help="greedy held-out evaluation every K steps (default 10)")
    p.add_argument("--eval-episodes", type=int, default=64, help="held-out episodes per evaluation (default 64)")
    p.add_argument("--config", default="quickstart", help="TrainConfig YAML or shipped name (default quickstart)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--out", default="runs/bench/time_to_threshold", help="folder of the runs and their logs")
    p.add_argument("--vllm-python", default=".venv-vllm/bin/python", help="interpreter of the vllm run")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: torch's)")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per run (default 4 h)")
    p.add_argument("--json", metavar="PATH", help="also write the threshold and results as JSON")
    p.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    p.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--threshold", type=float, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    if not args.trainers or set(args.trainers) - set(TRAINERS):
        p.error(f"--trainers must be a subset of {','.join(TRAINERS)}; got {args.trainers}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for name in ("max_steps", "eval_every", "eval_episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    return args


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    base = threshold_of(args)
    print(f"threshold {base['threshold']:.3f} ({base['answer']})", file=sys.stderr, flush=True)
    results = []
    for i, seed in enumerate(args.seeds):
        # Alternate the order between seeds, so slow drift in machine load hits every trainer alike.
        for name in (args.trainers if i % 2 == 0 else args.trainers[::-1]):
            print(f"{name} seed {seed} ...", file=sys.stderr, flush=True)
            r = spawn(args, argv, name, seed, base["threshold"])
            results.append(r if "error" in r else summarise(r, base["threshold"]))
            done = r.get("error") or f"done in {r['process_s']:.0f} s"
            print(f"  {name} seed {seed}: {done}", file=sys.stderr, flush=True)
    print(report(args, base, results))
    if args.json:
        from envs.atomic import write_json_atomic

        write_json_atomic(args.json, {"args": vars(args), "threshold": base, "results": results}, indent=2)


if __name__ == "__main__":
    main()
