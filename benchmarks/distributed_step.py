"""Step time of ``cubeworld train`` with 1 process and with 2 data-parallel ranks (torchrun, gloo, CPU).

Every run trains the same GRPO steps (the quickstart's step by default: tiny base,
TopBlockXOnly-v0, 4 prompts x 16 completions, at most 16 new tokens, KL to the base),
no evaluation, and is read back from its ``metrics.jsonl``: the median ``time_step_s``
(rollouts, forward/backward, update, all-reduce) and ``time_rollout_s`` over the steps after
the first (warm-up), and the wall time of the whole command (start-up and model loading
included). The rows:

* ``1 proc, step seeding``: the single-process default (``rollout_seeding`` null = ``step``:
  the step's prompts sampled in one batched call);
* ``1 proc, prompt seeding``: one generate call per prompt, as every rank of a distributed run
  samples (so these numbers are the same run as the 2-rank one);
* ``2 ranks``: ``torchrun --standalone --nproc_per_node 2 -m cubeworld train``, each rank one
  thread (torchrun's default), half the prompts each.

Each single-process row runs at 1 torch thread and at ``--threads`` (default: the machine's
cores), so the table separates what a second rank buys from what a second thread buys. The
last column is the row's step time over the 2-rank step time (> 1: two ranks are faster). On a
2-core machine two ranks can at best halve the step and in practice less: both ranks share the
cores with their collectives and with whatever else runs (the load average is printed), and
every rank loads its own model (the wall column).

    python benchmarks/distributed_step.py                 # ~2 min on 2 idle cores (7 at load 8)
    python benchmarks/distributed_step.py --steps 4 --group-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(out: Path, args: argparse.Namespace, ranks: int, threads: int, seeding: str) -> dict[str, float]:
    sets = {"model": args.model, "max_steps": args.steps + 1, "prompts_per_step": args.prompts,
            "group_size": args.group_size, "max_new_tokens": args.max_new_tokens, "eval_episodes": 0,
            "eval_every": 0, "save_every": 0, "seed": 0, "rollout_seeding": seeding}
    cli = ["train", "--quiet", "--output-dir", str(out)] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m"]
              if ranks > 1 else [sys.executable, "-m"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    env.pop("WORLD_SIZE", None)
    t0 = time.perf_counter()
    subprocess.run(launch + ["cubeworld"] + cli, env=env, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    return {"step": statistics.median(r["time_step_s"] for r in rows),
            "rollout": statistics.median(r["time_rollout_s"] for r in rows), "wall": wall,
            "reward": rows[-1]["reward_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-base")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts_per_step (global)")
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of a 1-process run")
    args = parser.parse_args()
    cases = [("1 proc, step seeding", 1, 1, "step"), ("1 proc, prompt seeding", 1, 1, "prompt"),
             ("2 ranks (gloo)", 2, 1, "prompt"), ("1 proc, step seeding", 1, args.threads, "step"),
             ("1 proc, prompt seeding", 1, args.threads, "prompt")]
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_, ranks, threads, seeding) in enumerate(cases):
            results.append(_run(Path(tmp) / str(i), args, ranks, threads, seeding))
    two = results[2]["step"]
    print(f"GRPO step, {args.model}, {args.prompts} prompts x {args.group_size} completions, <= {args.max_new_tokens} "
          f"new tokens; {os.cpu_count()} CPU cores, load average {load:.1f} before / {os.getloadavg()[0]:.1f} after; "
          f"median over {args.steps} steps after a warm-up step")
    print(f"{'run':<24} {'threads/rank':>12} {'step s':>8} {'rollout s':>10} {'wall s':>8} {'row / 2 ranks':>14}")
    for (label, _, threads, _), r in zip(cases, results):
        print(f"{label:<24} {threads:>12} {r['step']:>8.2f} {r['rollout']:>10.2f} {r['wall']:>8.1f} "
              f"{r['step'] / two:>13.2f}x")
    print("The prompt-seeding rows and the 2-rank row train the same run (last step's reward_mean: "
          f"{results[1]['reward']:.4f}, {results[2]['reward']:.4f}).")


if __name__ == "__main__":
    main()
