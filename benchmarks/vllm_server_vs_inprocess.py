"""Rollouts from an in-process vLLM engine against rollouts from a vLLM server, at the same batch.

The same model, batch and engine settings both ways: ``backend="vllm"`` (:class:`agents.backends.vllm.VLLMBackend`,
the engine inside the trainer's process) and ``backend="vllm-server"``
(:class:`agents.backends.vllm_server.VLLMServerBackend` on one ``cubeworld serve-rollouts`` server started
here on a free localhost port). fp32, eager, one image per prompt, LoRA rank limit 16, chunked prefill
off on CPU, 1 GiB KV cache on CPU (:mod:`agents.backends.vllm_cpu`). Each way runs in its own worker
subprocess, one after the other (never side by side: on 2 cores they would slow each other; the
server is started for its turn only, and stopped after it).

Per way, after one warm-up call: ``--repeats`` calls of ``agent.sample`` on ``--prompts`` TopBlockXOnly-v0
observations with ``--n`` completions each (the quickstart's step: 4 x 16, 16 new tokens), on

* base: the base model;
* new adapter: a LoRA adapter (rank 16, all linear layers of the language model) whose version is bumped
  before every call, as the trainer publishes one per update; the call includes the engine's load of
  the new version (in-process: ``add_lora`` from the folder; server: ``/v1/load_lora_adapter`` and the
  old version's unload). Saving the folder is not timed (the same for both).

Columns: median seconds per call (min to max), generated tokens per second over all timed calls, and
the ratio server / in-process of the medians, measured in this invocation, with the machine's load
average before and after. The ways run one after the other, not interleaved call by call: tried on 2
cores, with both engines alive and taking turns, the in-process base calls took a median 7.3 s against
0.3 to 2.9 s alone (a load average of 8 in all three runs). On a shared machine, compare figures only
from runs at a low load average. Run it with the interpreter of
``scripts/setup_vllm_env.sh`` (``.venv-vllm/bin/python``) on a CPU-only machine, or where the ``vllm``
extra is installed:

    .venv-vllm/bin/python benchmarks/vllm_server_vs_inprocess.py
    .venv-vllm/bin/python benchmarks/vllm_server_vs_inprocess.py --prompts 8 --n 8 --repeats 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODES = ("in-process", "server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(args: argparse.Namespace) -> dict:
    """One way's timings (runs in its own process)."""
    import gymnasium as gym
    from peft import LoraConfig

    import envs  # noqa: F401  (registers the ids)
    from agents.backends.base import SamplingParams
    from agents.vlm import VLMAgent

    if args.worker == "in-process":
        agent = VLMAgent.from_pretrained(args.model, backend="vllm", device="cpu", dtype="float32", backend_options={
            "max_images_per_prompt": 1, "max_lora_rank": 16, "seed": 0})
    else:
        agent = VLMAgent.from_pretrained(args.model, backend="vllm-server", device="cpu", dtype="float32",
                                         backend_options={"urls": [args.url]})
    env = gym.make("TopBlockXOnly-v0")
    observations = [env.reset(seed=seed)[0] for seed in range(args.prompts)]
    env.close()
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, n=args.n, seed=None)

    def timed() -> tuple[float, int]:
        start = time.perf_counter()
        groups = agent.sample(observations, params=params)
        return time.perf_counter() - start, sum(len(c.token_ids) for g in groups for c in g)

    timed()  # warm-up: first-call costs of either engine
    rows = {"base": [timed() for _ in range(args.repeats)]}
    agent.load_adapter(LoraConfig(r=16, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                       "gate_proj", "up_proj", "down_proj"]),
                       name="default")
    with tempfile.TemporaryDirectory() as folder:
        rows["new adapter"] = []
        for k in range(args.repeats + 1):
            path = pathlib.Path(folder) / f"v{k}"
            agent.model.save_pretrained(str(path))
            agent.mark_adapter_updated(path=path)
            seconds, tokens = timed()
            if k:  # the first adapter call is a warm-up too (LoRA kernels, first load)
                rows["new adapter"].append((seconds, tokens))
    return {case: {"s_per_call": statistics.median(s for s, _ in r), "s_min": min(s for s, _ in r),
                   "s_max": max(s for s, _ in r), "tokens_per_s": sum(t for _, t in r) / sum(s for s, _ in r)}
            for case, r in rows.items()}


@contextlib.contextmanager
def rollout_server(model: str, log: pathlib.Path, start_timeout_s: float = 600):
    """``cubeworld serve-rollouts MODEL`` on a free port; yields its URL; stopped (its process group) on exit."""
    port, key = _free_port(), secrets.token_urlsafe(16)
    env = {**os.environ, "VLLM_API_KEY": key}
    cmd = [sys.executable, "-m", "cubeworld", "serve-rollouts", model, "--port", str(port), "--dtype", "float32",
           "--max-lora-rank", "16", "--max-images-per-prompt", "1"]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} exited ({process.returncode}); its log: {log}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(url + "/health", timeout=5).status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server was not healthy after {start_timeout_s:g} s; its log: {log}")
            time.sleep(1)
        os.environ["VLLM_API_KEY"] = key  # the worker's backend sends it
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_worker(mode: str, args: argparse.Namespace, url: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--model", args.model, "--prompts", str(args.prompts),
           "--n", str(args.n), "--max-new-tokens", str(args.max_new_tokens), "--repeats", str(args.repeats)]
    if url:
        cmd += ["--url", url]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-base")
    parser.add_argument("--prompts", type=int, default=4, help="observations per call (default: 4)")
    parser.add_argument("--n", type=int, default=16, help="completions per observation (default: 16)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per case (default: 7)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=pathlib.Path, default=ROOT / "runs" / "bench" / "serve_rollouts.log",
                        help="the server's log")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    args.log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    results = {"in-process": run_worker("in-process", args)}
    with rollout_server(args.model, args.log) as url:
        results["server"] = run_worker("server", args, url)
    print(f"{args.model}, {args.prompts} prompts x {args.n} completions, {args.max_new_tokens} new tokens, "
          f"{args.repeats} calls per case after warm-up; {os.cpu_count()} CPU cores visible, load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| case | in-process s/call, median (min-max) | server s/call, median (min-max) | in-process tokens/s "
          "| server tokens/s | server / in-process |")
    print("|---|---|---|---|---|---|")
    for case in results["in-process"]:
        a, b = results["in-process"][case], results["server"][case]
        print(f"| {case} | {a['s_per_call']:.3f} ({a['s_min']:.3f}-{a['s_max']:.3f}) | {b['s_per_call']:.3f} "
              f"({b['s_min']:.3f}-{b['s_max']:.3f}) | "
              f"{a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | {b['s_per_call'] / a['s_per_call']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
