"""``cubeworld export-dataset``: seeded scenes as a Hugging Face dataset for TRL (:func:`envs.export_dataset`).

    cubeworld export-dataset --env TopBlockXOnly-v0 -n 1000 --seed 0 --out data/topblock-x
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_subcommand"]


def _export(args: argparse.Namespace) -> int:
    from envs.trl_interop import export_dataset

    out = export_dataset(args.env, args.n, args.seed, args.out, image_size=args.image_size,
                         reasoning=args.reasoning)
    print(f"wrote {args.n} scenes of {args.env} (seeds {args.seed}..{args.seed + args.n - 1}) to {out}; "
          f"load with datasets.load_from_disk({str(out)!r}), score with envs.reward_function({args.env!r})")
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Register ``cubeworld export-dataset``."""
    p = subparsers.add_parser(
        "export-dataset",
        help="write seeded scenes as a Hugging Face dataset for TRL's GRPOTrainer / SFTTrainer",
        description="Write the scenes of seeds SEED..SEED+N-1 of one environment (the scenes `cubeworld eval "
        "--seed SEED -n N` shows) as a Hugging Face `datasets` dataset (save_to_disk) with columns image, "
        "prompt and completion (conversational: the env's prompt, the oracle answer), scene (JSON), "
        "optimal_answer, env_id and seed. Train on it with TRL's GRPOTrainer and "
        "reward_funcs=envs.reward_function(ENV), or with its SFTTrainer. Needs: pip install 'cubeworld[trl]'.",
    )
    p.add_argument("--env", required=True, help="environment id, e.g. TopBlockXOnly-v0")
    p.add_argument("-n", type=int, required=True, metavar="N", help="scenes (rows), >= 1")
    p.add_argument("--seed", type=int, default=0, help="first scene seed (default: 0); training's held-out "
                   "seeds start at 1000000")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist, or be empty)")
    p.add_argument("--image-size", type=int, default=256, help="square image side in pixels (default: 256)")
    p.add_argument("--reasoning", action="store_true", help="use the long-reasoning prompt variant")
    p.set_defaults(func=_export)
