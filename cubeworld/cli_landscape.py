"""``cubeworld landscape``: the reward of every answer on a grid for one scene of each placement task."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from evaluation.landscape import LANDSCAPE_ENV_IDS, landscape_figure

    landscapes = landscape_figure(args.out, seed=args.seed, step=args.step, env_ids=args.env or LANDSCAPE_ENV_IDS)
    for land in landscapes:
        best, reward = land.best()
        print(f"{land.env_id:<20} seed {land.seed}: optimal answer {land.optimal_action}, "
              f"best on the grid {best} (reward {reward:.3f}), {land.rewards.size} answers scored")
    print(f"written: {args.out}")
    return 0


def add_subcommand(subparsers) -> None:
    """Add ``landscape`` to the ``cubeworld`` command's subparsers."""
    p = subparsers.add_parser(
        "landscape",
        help="plot the reward of every answer on a grid for one scene of each placement task",
        description="Score every answer on a grid (x over [-600, 600]; for SideBlockXY-v0 also up over [0, 1000]) "
        "on the scene of one seed with the environment's own reward code, and plot the landscapes with a linear "
        "and a symlog scale.",
    )
    p.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    p.add_argument("--out", default="landscape.png", help="PNG to write (default: landscape.png)")
    p.add_argument("--step", type=int, default=10, help="grid spacing in answer units (default: 10; 100 = one block)")
    p.add_argument("--env", action="append", metavar="ID",
                   help="placement task id (repeatable; default: TopBlockXOnly-v0, SideBlockXOnly-v0, SideBlockXY-v0)")
    p.set_defaults(func=_run)
