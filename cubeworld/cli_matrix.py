"""``cubeworld eval-matrix``: every agent on every environment, with baselines, CSV and heatmap."""

from __future__ import annotations

import argparse

from .cli_decoding import add_decoding_arguments


def _xy_step(text: str) -> tuple[int, int]:
    try:
        x, up = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--xy-step must be two ints X,UP such as 50,100, got {text!r}") from None
    return x, up


def env_kwargs_arg(text: str) -> dict:
    """``--env-kwargs``: a JSON object of ``gym.make`` keyword arguments."""
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object such as '{{\"n_blocks\": [4, 4]}}', "
                                         f"got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object (keyword -> value), got {text!r}")
    return value


def check_env_kwargs(env_ids: list[str], kwargs: dict | None) -> None:
    """An ``--env-kwargs`` key that some env does not take fails before any model loads, with close matches."""
    if kwargs:
        import gymnasium as gym

        import envs  # noqa: F401  (registers the ids)
        from training.config_rules import check_env_kwargs as check

        for env_id in env_ids:
            check(env_id, kwargs, gym)


def parse_column(text: str) -> tuple[str, str, dict]:
    """``--env``: ``ID``, ``NAME=ID`` or ``NAME=ID:JSON`` -> ``(column name, env id, its gym.make kwargs)``.

    ``NAME`` is letters, digits, ``_``, ``.``, ``-``; ``JSON`` an object merged over ``--env-kwargs``,
    e.g. ``towers-5-7=TowerStability-v0:{"n_blocks": [5, 7]}`` (a split of one id as its own column).

    Raises:
        ValueError: an empty NAME or ID, or JSON that is not an object.
    """
    from evaluation.matrix import parse_named_spec

    name, rest = parse_named_spec(text)
    env_id, sep, raw = rest.removeprefix("envs:").partition(":")
    if not env_id:
        raise ValueError(f"--env {text!r} names no env id; write ID, NAME=ID or NAME=ID:JSON")
    try:
        own = env_kwargs_arg(raw) if sep else {}
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--env {text!r}: {exc}") from None
    return (name if name != rest else env_id), env_id, own


def _run(args: argparse.Namespace) -> int:
    from evaluation.matrix import evaluate_matrix, parse_named_spec

    from .cli_decoding import decoding_from_args

    agents: dict[str, str] = {}
    for text in args.agent:
        name, spec = parse_named_spec(text)
        if name in agents:
            raise ValueError(f"agent name {name!r} is given twice; name each agent once (--agent NAME=SPEC)")
        agents[name] = spec
    import envs

    columns, kwargs = {}, {}
    for text in args.env or list(envs.ENV_IDS):
        name, env_id, own = parse_column(text)
        if name in kwargs:
            raise ValueError(f"column {name!r} is given twice; name each --env column once (NAME=ID:JSON)")
        columns[name], kwargs[name] = env_id, {**(args.env_kwargs or {}), **own}
        check_env_kwargs([env_id], kwargs[name])
    result = evaluate_matrix(agents, list(columns), n_episodes=args.episodes, seed=args.seed,
                             batch_size=args.batch_size, x_step=args.x_step, xy_step=args.xy_step,
                             sampling=decoding_from_args(args), progress=not args.quiet,
                             log=None if args.quiet else print, max_history_turns=args.max_history_turns,
                             env_kwargs=kwargs, columns=columns)
    print(result.summary())
    paths = result.save(args.out)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_subcommand(subparsers) -> None:
    """Add ``eval-matrix`` to the ``cubeworld`` command's subparsers."""
    from agents.factory import AGENT_SPECS

    p = subparsers.add_parser(
        "eval-matrix",
        help="evaluate agents x environments (the generalisation matrix): CSV, JSON and heatmap PNG",
        description="Evaluate every agent on every environment on the same seeds, with each environment's "
        "random baseline, optimum (oracle) and best constant answer (the image-blind shortcut, searched over a "
        "candidate grid with the environment's own reward code). Writes DIR/matrix.csv, baselines.csv, "
        "matrix.json and matrix.png (colour per column: 0 random, 1 optimum). Agent specs: "
        + "; ".join(f"{k}: {v}" for k, v in AGENT_SPECS.items()),
    )
    p.add_argument("--agent", action="append", required=True, metavar="NAME=SPEC",
                   help="a named agent, e.g. base=vlm:tiny-base, grpo=vlm:tiny-base+adapter=runs/x/checkpoints/"
                   "step-000100, random=random (repeatable; a bare SPEC is its own name)")
    p.add_argument("--env", action="append", metavar="[NAME=]ID[:JSON]",
                   help="a column: an environment id, optionally named and with its own gym.make kwargs, e.g. "
                   "'towers-5-7=TowerStability-v0:{\"n_blocks\": [5, 7]}' (repeatable; default: the four tasks)")
    p.add_argument("-n", "--episodes", type=int, default=64, help="episodes per cell (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default: 0)")
    p.add_argument("--out", default="matrix", help="output folder (default: matrix)")
    p.add_argument("--x-step", type=int, default=25,
                   help="best-constant candidates of x tasks: x every X_STEP units over [-600, 600] (default: 25)")
    p.add_argument("--xy-step", type=_xy_step, default=(50, 100), metavar="X,UP",
                   help="best-constant candidates of the x-y task: x every X, up every UP units (default: 50,100)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-cell lines")
    p.add_argument("--env-kwargs", type=env_kwargs_arg, default=None, metavar="JSON",
                   help='gym.make keyword arguments for every --env, e.g. \'{"n_blocks": [4, 4]}\' for '
                   "TowerBuild-v0 with four floor cubes (default: none)")
    p.add_argument("--max-history-turns", type=int, default=None, metavar="N",
                   help="multi-step envs: earlier turns a vlm: agent replays in its chat (default: all)")
    add_decoding_arguments(p)
    p.set_defaults(func=_run)
