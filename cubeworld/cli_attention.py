"""``cubeworld attention``: per-layer attention maps of the last prompt token over the image (:mod:`evaluation.attention`).

    cubeworld attention --model base=tiny-base --model rl=tiny-base+adapter=runs/grpo/checkpoints/step-000200 \\
        --env TopBlockXOnly-v0 --seed 2000000 --out attention.png

Models are given as for ``cubeworld probe`` (see :mod:`cubeworld.cli_probe`).
"""

from __future__ import annotations

import argparse
from typing import Any

from .cli_probe import add_model_arguments

__all__ = ["add_subcommand", "parse_layers"]


def parse_layers(text: str | None) -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; None or ``""`` -> None (the default layers).

    Raises:
        ValueError: a part that is not an integer.
    """
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"--layers must be comma-separated layer numbers (1..L), e.g. 1,2,4; got {text!r}") from exc


def _attention(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from evaluation.attention import attention_maps, plot_attention_grid

    if not args.models:
        raise ValueError("no model given: pass at least one --model (e.g. --model tiny-base)")
    layers = parse_layers(args.layers)
    env = gym.make(args.env)
    try:
        obs, info = env.reset(seed=args.seed)
    finally:
        env.close()
    rows = {}
    for spec in args.models:
        agent = spec.load(args.device)
        rows[spec.label] = maps = attention_maps(agent.model, agent.processor, obs)
        del agent
        mass = " ".join(f"{m:.3f}" for m in maps.image_mass)
        print(f"{spec.label}: {maps.maps.shape[0]} layers, {maps.grid[0]}x{maps.grid[1]} image tokens; "
              f"attention on the image per layer: {mass}")
    title = (f"{args.env} seed {args.seed}: offset {info['offset']:+.2f} block edges, "
             f"{'stable' if info['stable_initially'] else 'unstable'}, {info['n_blocks']} cubes")
    plot_attention_grid(rows, args.out, layers=layers, scale=args.scale, title=title)
    print(f"attention grid written to {args.out}")
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Register ``cubeworld attention``."""
    from evaluation.probes import DEFAULT_PROBE_SEED

    p = subparsers.add_parser(
        "attention",
        help="attention maps of the last prompt token over the image, per layer and model (PNG grid)",
        description="For one scene, the attention from the last prompt token to each image token, per decoder "
        "layer, averaged over heads, upsampled and overlaid on the image (the paper's A.7). Rows: models; "
        "columns: the image, then layers. Models: --model [LABEL=]MODEL[+adapter=ADAPTER_DIR] (repeatable).",
    )
    add_model_arguments(p)
    p.add_argument("--env", default="TopBlockXOnly-v0", help="environment id (default: TopBlockXOnly-v0)")
    p.add_argument("--seed", type=int, default=DEFAULT_PROBE_SEED,
                   help=f"scene seed (default: {DEFAULT_PROBE_SEED}, held out from training)")
    p.add_argument("--layers", default=None,
                   help="comma-separated decoder layers 1..L to show (default: all, or 8 evenly spaced)")
    p.add_argument("--scale", choices=("shared", "panel"), default="shared",
                   help="colour scale: one for all panels (default) or each panel to its own maximum")
    p.add_argument("--out", default="attention.png", help="PNG to write (default: attention.png)")
    p.set_defaults(func=_attention)
