"""``cubeworld pretrain``: the tiny-base recipe (:mod:`training.pretrain`; alias ``python -m training.pretrain``).

    cubeworld pretrain --seed 7            # build tiny-base:7 into the cache (about 10 minutes on 2 CPU cores)
    cubeworld pretrain --out agents/data/tiny-base --report
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_subcommand"]


def add_subcommand(subparsers: Any) -> None:
    """Register ``cubeworld pretrain`` with the recipe's own options (:func:`training.pretrain.add_arguments`)."""
    from training import pretrain

    p = subparsers.add_parser(
        "pretrain",
        help="build the pre-trained tiny base (tiny-base) that training starts from, by its seeded recipe",
        description=pretrain.__doc__.split("\n")[0] + " Stages: shift, perception, format (see training/pretrain.py).",
    )
    pretrain.add_arguments(p)
    p.set_defaults(func=pretrain.run)
