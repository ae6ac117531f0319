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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        print(f"cubeworld: error: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        return 2
    return args.func(args)
