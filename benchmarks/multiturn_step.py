"""Multi-turn training step against single-turn: time per step, per generated token, and peak memory.

Runs ``cubeworld train`` (GRPO on the tiny base, the quickstart otherwise, no held-out
evaluation) once per setting, each in its own subprocess, one after another, and prints one
row per setting from its ``metrics.jsonl``:

* ``single``: ``TopBlockXOnly-v0``, 4 scenes x 16 completions (the quickstart's step);
* ``retry, history 1``: ``TopBlockXOnly-Retry-v0`` (K = 3), 4 scenes x 8 trajectories, the
  chat replaying one earlier turn (``configs/multiturn/grpo_retry_top_block_x_only.yaml``);
* ``retry, full history``: the same with every earlier turn replayed.

Columns: step (s) and rollout (s), means over the steps after the first (start-up caches);
generated tokens per step (``tokens_per_s * time_rollout_s``); seconds per 1,000 generated
tokens (step time / tokens x 1000: the cost at equal generated tokens); turns per trajectory;
the peak resident set of the subprocess (``ru_maxrss``: model loading included, so a floor
shared by every row). The ratio column divides by the ``single`` row of the same invocation.

    python benchmarks/multiturn_step.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTINGS = {
    "single": ["env_id=TopBlockXOnly-v0", "group_size=16"],
    "retry, history 1": ["env_id=TopBlockXOnly-Retry-v0", "group_size=8", "max_history_turns=1"],
    "retry, full history": ["env_id=TopBlockXOnly-Retry-v0", "group_size=8", "max_history_turns=null"],
}
# The child trains, then reports its own peak resident set (kB on Linux) on its last line.
_CHILD = ("import resource, sys\nfrom cubeworld.cli import main\ncode = main(sys.argv[1:])\n"
          "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)")


def run(overrides: list[str], steps: int, out: pathlib.Path) -> dict[str, float]:
    cmd = [sys.executable, "-c", _CHILD, "train", "--quiet", "--output-dir", str(out)]
    for item in overrides + [f"max_steps={steps}", "eval_episodes=0", "eval_every=0", "save_every=0", "seed=0"]:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stdout.strip().splitlines()[-1].split()[1])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "time_step_s" in r][1:]
    tokens = statistics.mean(r["tokens_per_s"] * r["time_rollout_s"] for r in timed)
    step = statistics.mean(r["time_step_s"] for r in timed)
    return {"step": step, "rollout": statistics.mean(r["time_rollout_s"] for r in timed), "tokens": tokens,
            "per_1k": step / tokens * 1000, "turns": statistics.mean(r.get("turns_per_trajectory", 1.0) for r in timed),
            "peak_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per setting (the first is not timed)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(SETTINGS.items()):
            results[name] = run(overrides, args.steps, pathlib.Path(tmp) / str(i))
    base = results["single"]
    print(f"{'setting':<22} {'step s':>7} {'rollout s':>9} {'gen tokens':>10} {'s / 1k tok':>10} "
          f"{'x single':>8} {'turns':>6} {'peak RSS MB':>11}")
    for name, r in results.items():
        print(f"{name:<22} {r['step']:>7.2f} {r['rollout']:>9.2f} {r['tokens']:>10.0f} {r['per_1k']:>10.2f} "
              f"{r['per_1k'] / base['per_1k']:>8.2f} {r['turns']:>6.2f} {r['peak_mb']:>11.0f}")


if __name__ == "__main__":
    main()
