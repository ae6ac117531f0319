"""``cubeworld curves``: training curves of finished runs (:mod:`training.curves`; alias ``python -m training.curves``).

    cubeworld curves --run GRPO=runs/grpo --run SFT=runs/sft --out docs/training_curves.png
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_subcommand"]


def _curves(args: argparse.Namespace) -> int:
    from training.curves import run

    try:
        return run(args)
    except FileNotFoundError as exc:  # a --run folder that is not a training run; the message says so
        print(f"cubeworld curves: error: {exc}", file=sys.stderr)
        return 2


def add_subcommand(subparsers: Any) -> None:
    """Register ``cubeworld curves`` with the module's own options (:func:`training.curves.add_arguments`)."""
    from training import curves

    p = subparsers.add_parser(
        "curves",
        help="plot training and held-out reward against step for finished runs (PNG)",
        description=curves.__doc__.split("\n")[0],
    )
    curves.add_arguments(p)
    p.set_defaults(func=_curves)
