"""The ``cubeworld`` command: thin; it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import format_table, run_demo

    rows = run_demo(args.out, n_episodes=args.episodes, n_images=args.images, seed=args.seed)
    print(format_table(rows))
    print(f"example images written to {args.out}/")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation import evaluate

    agent = load_agent(args.agent, seed=args.seed, adapter=args.adapter)
    result = evaluate(agent, args.env, n_episodes=args.episodes, seed=args.seed,
                      batch_size=args.batch_size, progress=not args.quiet)
    result.agent = args.agent
    print(result.summary())
    if args.out:
        result.save(args.out)
        print(f"per-episode results written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cubeworld",
        description="Block-tower intuitive-physics environments for vision-language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="write example images of every env and print random vs optimal mean reward",
        description="Write example images of every environment and print, per env, the mean "
        "reward of a random legal answer and of the optimal answer over N seeds.",
    )
    demo.add_argument("--out", default="examples", help="folder for the PNGs (default: examples)")
    demo.add_argument("-n", "--episodes", type=int, default=50, help="seeds per env (default: 50)")
    demo.add_argument("--images", type=int, default=4, help="example episodes per env (default: 4)")
    demo.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    demo.set_defaults(func=_demo)

    from agents.factory import AGENT_SPECS

    ev = sub.add_parser(
        "eval",
        help="evaluate an agent on one environment",
        description="Run an agent on seeded episodes of one environment; print mean reward with a "
        "95%% bootstrap interval, legal-answer rate and outcomes. Agents: "
        + "; ".join(f"{k}: {v}" for k, v in AGENT_SPECS.items()),
    )
    ev.add_argument("--agent", required=True, help="agent spec, e.g. oracle, random, perceive, vlm:tiny")
    ev.add_argument("--env", required=True, help="environment id, e.g. TopBlockXOnly-v0")
    ev.add_argument("-n", "--episodes", type=int, default=100, help="episodes (default: 100)")
    ev.add_argument("--seed", type=int, default=0, help="first episode seed (default: 0)")
    ev.add_argument("--batch-size", type=int, default=16, help="observations per act() call")
    ev.add_argument("--adapter", default=None, help="PEFT adapter directory for vlm: agents")
    ev.add_argument("--out", default=None, help="write the full result as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    try:
        return args.func(args)
    except (ValueError, ImportError, gym_error()) as exc:
        print(f"cubeworld {args.command}: error: {exc}", file=sys.stderr)
        return 2


def gym_error() -> type[Exception]:
    import gymnasium

    return gymnasium.error.Error
