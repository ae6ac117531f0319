"""One GRPO step configuration through this project's trainer and through TRL's ``GRPOTrainer``.

The question a user asks before adopting ``cubeworld train``: why not TRL? This script runs
the same GRPO step through both, each in its own subprocess (so peak-memory figures are
separate), and prints the mean wall time per optimizer step, completions per second, peak
memory, and the step-time ratio ours / TRL (goal, issue 4: <= 0.8).

Same for both:

* the model and processor, loaded by :meth:`agents.vlm.VLMAgent.from_pretrained` (``tiny`` by
  default; ``--model DIR`` for a local checkpoint, ``--load-in-4bit`` for a QLoRA base);
* a fresh PEFT LoRA adapter, r = alpha = ``--lora-r``, dropout 0, on the language model's
  attention and MLP projections (q/k/v/o, gate/up/down; the vision encoder excluded: the
  regex of :func:`training.lora_targets.lora_target_regex`);
* ``--prompts`` scenes per step (the *same* scenes: the seeds our trainer draws for each
  step), ``--group-size`` completions per scene, at most ``--max-new-tokens`` tokens,
  temperature 1, top-p 1, no top-k; rewards from the environment (``reset(seed)``, then
  ``env.unwrapped.judge(text)`` per completion);
* the objective: token-level clipped surrogate (eps 0.2), group-normalised advantages,
  normalised by the batch's completion tokens (TRL ``loss_type="bnpo"``), no KL term
  (``beta=0``), one update per batch (so old log-probabilities are the detached current
  ones); AdamW at ``--learning-rate``, constant schedule, weight decay 0, grad-norm clip 1.0;
* precision: the model's dtype (fp32 on CPU, bf16 on CUDA), no autocast (TRL ``bf16=False``);
* no evaluation, no checkpoints during the timed steps, no logging backends.

Where the two differ by default, and the switches:

* our trainer skips groups whose rewards are all equal (no forward/backward for them);
  TRL trains on them with zero advantage. A random-weight ``tiny`` answers nonsense, so
  nearly every group is degenerate and skipping would time almost nothing but rollouts:
  the benchmark therefore turns skipping **off** (same work as TRL);
  ``--skip-degenerate-groups`` measures our default instead.
* TRL turns gradient checkpointing on by default; our trainer has none, so it is **off**
  here (same work); ``--trl-gradient-checkpointing`` measures TRL's default.
* our ``hf`` backend also returns every sampled token's log-probability (for the
  backend/trainer log-prob gap in the logs); TRL's transformers path does not.
* TRL scores the training forward with its fused LM head over every position of the
  sequence (prompt included); ours computes logits for the completion positions only. With
  Qwen's 152k-row vocabulary this dominates TRL's step on small models.
* with a 4-bit base, TRL casts the LoRA weights to bf16; ours keeps them in fp32.

Step time: each trainer runs ``1 + --steps`` optimizer steps; the timestamps are taken at
the end of every step (our trainer: when the step's metrics are logged; TRL: the
``on_step_end`` callback), and the mean over the ``--steps`` intervals after the warm-up
step is reported. Each interval is everything a step costs, data included (our env resets
and rendering; TRL's dataloader and image decoding). Per-phase timers (generation,
environment, training forward, backward, optimizer) are wrapped around both trainers'
own functions and reported per step. Ours: ``generate`` is the backend call (chat template
and image processing of the P prompts included), ``train forward`` is
``VLMAgent.completion_logprobs`` (image processing of the P*G rows included). TRL:
``generate`` is ``_generate_single_turn``; its chat template and image processing (twice
per step, P*G rows each) and the dataloader fall under ``other``.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset after the model is
loaded, so it includes the weights plus everything training adds). On CPU the process's
peak resident set over the training steps (Linux: ``VmHWM`` after resetting it through
``/proc/self/clear_refs``; elsewhere psutil sampling every 5 ms, else ``ru_maxrss``,
which includes loading), and the resident set before training for reference.

    python benchmarks/trainer_vs_trl.py                    # tiny, P=2, G=8, M=16, 3 steps, 2 runs each (~1 min CPU)
    python benchmarks/trainer_vs_trl.py --prompts 4 --group-size 16 --steps 5
    python benchmarks/trainer_vs_trl.py --only ours --profile    # cProfile of our trainer's timed steps

``--repeats`` runs each trainer that many times, alternating the order, and pools the step
times (the table gives mean, median and range; the ratio line both). On a machine shared
with other jobs, torch's OpenMP threads can stall for seconds when a core is taken from
them (steps 10-50x slower, at random); ``--threads 1`` measures reliably there, and the
ratio, not the absolute time, is what to compare.

GPU, a Qwen2.5-VL-7B-shaped model with random weights in 4-bit (no download needed):

    python benchmarks/trainer_vs_trl.py make-random-model /data/qwen25vl7b-random          # ~16 GB bf16
    python benchmarks/trainer_vs_trl.py --model /data/qwen25vl7b-random --load-in-4bit \\
        --prompts 2 --group-size 8 --max-new-tokens 64 --steps 3

``make-random-model`` builds ``Qwen2_5_VLForConditionalGeneration`` from Qwen2.5-VL-7B-Instruct's
configuration (:data:`QWEN25_VL_7B_CONFIG`, or ``--config-json`` a local ``config.json``) with
transformers' random initialisation (normal, std 0.02; on the GPU when there is one), saves it
in bf16 safetensors, and copies the ``tiny`` model's tokenizer and image processor next to it:
the 7B architecture, vocabulary size (152,064 rows) and vision tower, with image inputs
processed exactly as Qwen's (14 px patches, 2x2 merge); the config's special-token ids are
set to that tokenizer's. ``--set text_config.num_hidden_layers=2`` (repeatable) overrides
config fields, e.g. to test the path on a CPU with a cut-down model.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL = 0.8

# benchmarks/ is the script's folder, so its modules import by their own names.
from grpo_runs import worker  # noqa: E402  (the two timed runs: ours and TRL's)
from measure import run_worker  # noqa: E402
from random_model import make_random_model  # noqa: E402

from envs.atomic import write_json_atomic  # noqa: E402

# -- the parent: run both, print the table -------------------------------------------------------


def _spawn(name: str, argv: list[str], timeout: float) -> dict[str, Any]:
    return run_worker(str(pathlib.Path(__file__).resolve()), [*argv, "--worker", name], f"trainer_vs_trl-{name}",
                      timeout, str(ROOT))


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One trainer's repeats as one result: step times pooled, phases averaged, the highest peak."""
    merged = dict(runs[0])
    times = [t for r in runs for t in r["step_times"]]
    merged.update(step_times=times, step_s=sum(times) / len(times), runs=len(runs),
                  run_means=[r["step_s"] for r in runs],
                  peak_mb=max(r["peak_mb"] for r in runs),
                  rss_before_mb=sum(r["rss_before_mb"] for r in runs) / len(runs),
                  completion_length=sum(r["completion_length"] for r in runs) / len(runs),
                  phases={k: sum(r["phases"].get(k, 0.0) for r in runs) / len(runs)
                          for k in {k for r in runs for k in r["phases"]}},
                  extra={k: sum(r["extra"][k] for r in runs) / len(runs) for k in runs[0]["extra"]},
                  profile="\n".join(r.get("profile", "") for r in runs).strip())
    return merged


def _median(values: list[float]) -> float:
    s = sorted(values)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def report(args, results: list[dict[str, Any]]) -> str:
    batch = args.prompts * args.group_size
    out = [f"GRPO step: model={args.model}{' (4-bit)' if args.load_in_4bit else ''}, env={args.env_id}, "
           f"P={args.prompts} prompts x G={args.group_size} completions = {batch}/step, M={args.max_new_tokens} "
           f"new tokens, LoRA r=alpha={args.lora_r} (LM attention+MLP), lr={args.learning_rate}; "
           f"{args.repeats} run(s) per trainer, each {args.steps} timed steps after 1 warm-up",
           f"device: {results[0]['device']}, torch threads: {results[0]['threads']}; "
           f"ours skip_degenerate_groups={args.skip_degenerate_groups}, "
           f"TRL gradient_checkpointing={args.trl_gradient_checkpointing}", ""]
    mem_label = "peak GPU mem (MB)" if results[0]["device"].startswith("cuda") else "peak RSS (MB)"
    rows = []
    for r in results:
        times = r["step_times"]
        rows.append([r["trainer"], f"{r['step_s']:.3f}", f"{_median(times):.3f}", f"{min(times):.3f}-{max(times):.3f}",
                     f"{batch / r['step_s']:.1f}", f"{r['completion_length']:.1f}", f"{r['peak_mb']:.0f}",
                     f"{r['rss_before_mb']:.0f}"])
    out.append(_table(rows, ["trainer", "step mean (s)", "median (s)", "min-max (s)", "completions/s",
                             "tokens/completion", mem_label, "RSS before (MB)"]))
    by = {r["trainer"]: r for r in results}
    if "ours" in by and "TRL" in by:
        ours, trl = by["ours"], by["TRL"]
        ratio = ours["step_s"] / trl["step_s"]
        median = _median(ours["step_times"]) / _median(trl["step_times"])
        out += ["", f"step time ours/TRL: {ratio:.2f}x mean, {median:.2f}x median "
                    f"(goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}); "
                    f"peak memory ours/TRL: {ours['peak_mb'] / trl['peak_mb']:.2f}x"]
        if args.repeats > 1:
            out.append("per-run mean step (s): " + "; ".join(
                f"{r['trainer']} " + ", ".join(f"{x:.3f}" for x in r["run_means"]) for r in results))
    order = ["generate", "env", "train forward", "loss + backward", "optimizer"]
    phases = sorted({k for r in results for k in r["phases"]}, key=lambda k: order.index(k) if k in order else 99)
    rows = []
    for r in results:
        known = sum(r["phases"].values())
        rows.append([r["trainer"], *[f"{r['phases'].get(k, 0.0):.3f}" for k in phases],
                     f"{r['step_s'] - known:.3f}", f"{r['step_s']:.3f}"])
    out += ["", "where a step's time goes (s per step, mean of the timed steps):",
            _table(rows, ["trainer", *phases, "other", "step"])]
    notes = [f"{r['trainer']}: {k} = {v:.2f}" for r in results for k, v in r["extra"].items()]
    out += ["", "memory: " + "; ".join(f"{r['trainer']}: {r['memory_method']}" for r in results)]
    if notes:
        out.append("notes: " + "; ".join(notes))
    for r in results:
        if r.get("profile"):
            out += ["", f"cProfile of {r['trainer']}'s timed steps (cumulative):", r["profile"]]
    return "\n".join(out)


# -- command line --------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or a local checkpoint folder (default: tiny)")
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit NF4 base (QLoRA; bitsandbytes)")
    parser.add_argument("--env-id", default="TopBlockXOnly-v0")
    parser.add_argument("--prompts", "-P", type=int, default=2, help="prompts (scenes) per step (default 2)")
    parser.add_argument("--group-size", "-G", type=int, default=8, help="completions per prompt (default 8)")
    parser.add_argument("--max-new-tokens", "-M", type=int, default=16, help="most tokens per completion (default 16)")
    parser.add_argument("--steps", "-N", type=int, default=3, help="timed steps after 1 warm-up step (default 3)")
    parser.add_argument("--repeats", "-R", type=int, default=2,
                        help="runs per trainer, alternating ours/TRL; step times pooled (default 2)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank = alpha (default 16)")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: torch's)")
    parser.add_argument("--only", choices=["ours", "trl"], help="run one trainer only")
    parser.add_argument("--skip-degenerate-groups", action="store_true",
                        help="ours: skip all-equal-reward groups (our default; off here: TRL trains on them)")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true",
                        help="TRL: gradient checkpointing on (TRL's default; off here: ours has none)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each trainer's timed steps")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker (default 3600)")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("prompts", "max_new_tokens", "steps", "lora_r", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.group_size < 2:
        parser.error(f"--group-size must be >= 2 (advantages are relative to the group); got {args.group_size}")
    return args


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["make-random-model"]:
        p = argparse.ArgumentParser(prog="trainer_vs_trl.py make-random-model",
                                    description="Write a random-weight Qwen2.5-VL (7B shape by default) for --model.")
        p.add_argument("out", help="folder to write")
        p.add_argument("--config-json", help="a local config.json to use instead of Qwen2.5-VL-7B-Instruct's")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. text_config.num_hidden_layers=2 (repeatable)")
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv[1:])
        make_random_model(a.out, a.config_json, a.set, a.seed)
        return
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    names = [args.only] if args.only else ["ours", "trl"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(args.repeats):
        # Alternate the order (ours, TRL, TRL, ours, ...) so slow drift in machine load hits both alike.
        for name in (names if rep % 2 == 0 else names[::-1]):
            print(f"run {rep + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            result = _spawn(name, argv, args.timeout)
            runs[name].append(result)
            print(f"  {name}: {result['step_s']:.3f} s/step ({result['process_s']:.0f} s with start-up)",
                  file=sys.stderr, flush=True)
    results = [_merge(runs[name]) for name in names]
    print(report(args, results))
    if args.json:
        write_json_atomic(args.json, {"args": vars(args), "results": results}, indent=2)


if __name__ == "__main__":
    main()
