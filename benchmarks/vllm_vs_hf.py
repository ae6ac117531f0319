"""The quickstart on vLLM rollouts against HF rollouts: time per step, rollout tokens/s, held-out reward.

Runs ``cubeworld train`` (the quickstart config, ``--set`` overrides allowed) once per backend
and seed, each in its own subprocess with this interpreter, one after another (never side by
side: on 2 cores they would slow each other), then prints one row per run and the mean per
backend, with the ratio vllm / hf measured in this invocation. Both backends must import here:
run it with the interpreter of ``scripts/setup_vllm_env.sh`` (``.venv-vllm/bin/python``) on a
CPU-only machine, or wherever the ``vllm`` extra is installed.

Columns, from each run's ``metrics.jsonl`` and ``result.json``:

* step (s): mean ``time_step_s`` over the run's steps (rollouts, the update, and for vLLM the
  adapter's publication; held-out evaluations excluded);
* rollout (s): mean ``time_rollout_s``; tokens/s: generated tokens per rollout second, mean
  over steps (``tokens_per_s``);
* wall: the whole command, model and engine start-up and both evaluations included;
* before, after [95% CI]: the held-out reward before and after training (the default evaluation decoding,
  temperature 1.0 / min_p 0.1, seeded with ``eval_seed``), and its best-constant bar.

    .venv-vllm/bin/python benchmarks/vllm_vs_hf.py                      # seeds 0, 200 steps each
    .venv-vllm/bin/python benchmarks/vllm_vs_hf.py --seeds 0 1 2 --set max_steps=50
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(backend: str, seed: int, out: pathlib.Path, overrides: list[str]) -> dict:
    """One ``cubeworld train`` in a subprocess; returns its figures."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "cubeworld", "train", "--quiet", "--set", f"backend={backend}",
           "--set", f"seed={seed}", "--output-dir", str(out)] + [a for o in overrides for a in ("--set", o)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time_step_s" in r]
    result = json.loads((out / "result.json").read_text())
    return {"backend": backend, "seed": seed, "steps": len(steps), "wall_s": wall,
            "step_s": statistics.fmean(r["time_step_s"] for r in steps),
            "rollout_s": statistics.fmean(r["time_rollout_s"] for r in steps if "time_rollout_s" in r),
            "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in steps if "tokens_per_s" in r),
            "before": result["before"]["mean_reward"],
            "after": result["after"]["mean_reward"], "after_ci": result["after"]["ci95"],
            "constant": result["constant_baseline"]["mean_reward"], "constant_ci": result["constant_baseline"]["ci95"],
            "stdout": proc.stdout}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. --set max_steps=50")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "bench" / "vllm_vs_hf")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
    args = parser.parse_args(argv)
    results = []
    for seed in args.seeds:
        for backend in args.backends:
            results.append(run(backend, seed, args.out / f"{backend}-s{seed}", args.overrides))
            r = results[-1]
            print(f"done: {backend} seed {seed}: {r['step_s']:.2f} s/step, after {r['after']:.2f}", file=sys.stderr)
    print("| backend | seed | steps | step (s) | rollout (s) | rollout tokens/s | wall | before | after [95% CI] | best constant |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['seed']} | {r['steps']} | {r['step_s']:.2f} | {r['rollout_s']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['wall_s'] / 60:.1f} min | {r['before']:.2f} | {r['after']:.2f} "
              f"[{r['after_ci'][0]:.2f}, {r['after_ci'][1]:.2f}] | {r['constant']:.2f} |")
    means = {}
    for backend in args.backends:
        mine = [r for r in results if r["backend"] == backend]
        means[backend] = {k: statistics.fmean(r[k] for r in mine) for k in ("step_s", "rollout_s", "tokens_per_s",
                                                                              "wall_s", "before", "after")}
        m = means[backend]
        low, high = min(r["after"] for r in mine), max(r["after"] for r in mine)
        print(f"| {backend}, mean of {len(mine)} | | | {m['step_s']:.2f} | {m['rollout_s']:.2f} | "
              f"{m['tokens_per_s']:.0f} | {m['wall_s'] / 60:.1f} min | {m['before']:.2f} | {m['after']:.2f} "
              f"(range {low:.2f} to {high:.2f}) | |")
    if {"hf", "vllm"} <= set(means):
        v, h = means["vllm"], means["hf"]
        print(f"\nratio vllm / hf: step time {v['step_s'] / h['step_s']:.2f}x, rollout time "
              f"{v['rollout_s'] / h['rollout_s']:.2f}x, rollout tokens/s {v['tokens_per_s'] / h['tokens_per_s']:.2f}x, "
              f"wall {v['wall_s'] / h['wall_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "stdout"} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
