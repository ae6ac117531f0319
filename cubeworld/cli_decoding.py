"""The decoding options every evaluation command shares (``eval``, ``eval-matrix``, ``eval-real``, ``bias``).

One default for all of them and for the trainer's held-out evaluation:
:data:`agents.backends.base.EVAL_DECODING` (the paper's temperature 1.0 with min_p 0.1)
and :data:`agents.backends.base.EVAL_BATCH_SIZE` observations per ``act`` call, so
numbers from different commands compare. The settings are recorded under
``"decoding"`` in every result file.
"""

from __future__ import annotations

import argparse

__all__ = ["add_decoding_arguments", "decoding_from_args"]


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--temperature --top-p --min-p --max-new-tokens --greedy --batch-size`` to ``parser``."""
    from agents.backends.base import EVAL_BATCH_SIZE
    from agents.backends.base import EVAL_DECODING as d

    group = parser.add_argument_group(
        "decoding of VLM agents (default: the paper's, temperature 1.0, min_p 0.1; recorded in results)")
    group.add_argument("--temperature", type=float, default=d.temperature,
                       help=f"sampling temperature (default: {d.temperature:g}; 0 = greedy)")
    group.add_argument("--top-p", type=float, default=d.top_p, help=f"nucleus mass (default: {d.top_p:g})")
    group.add_argument("--min-p", type=float, default=d.min_p,
                       help=f"min-p sampling threshold, 0 disables (default: {d.min_p:g})")
    group.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                       help=f"most generated tokens per answer (default: {d.max_new_tokens})")
    group.add_argument("--greedy", action="store_true", help="greedy decoding (same as --temperature 0)")
    group.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE,
                       help=f"observations per act() call; part of a seeded agent's decoding (default: "
                            f"{EVAL_BATCH_SIZE})")


def decoding_from_args(args: argparse.Namespace):
    """The :class:`agents.backends.base.SamplingParams` the options name (seed left to the agent loader).

    Raises:
        ValueError: an option out of range (the message names it and the fix).
    """
    from agents.backends.base import SamplingParams

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    temperature = 0.0 if args.greedy else args.temperature
    return SamplingParams(temperature=temperature, top_p=args.top_p, min_p=args.min_p,
                          max_new_tokens=args.max_new_tokens)
