"""``cubeworld eval-real`` (real photos, human alignment) and ``cubeworld bias`` (T_pref): thin."""

from __future__ import annotations

import argparse
import sys


def _eval_real(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation.real import evaluate_real

    agent = load_agent(args.agent, seed=args.seed, adapter=args.adapter)
    try:
        result = evaluate_real(agent, args.data, image_size=args.image_size, batch_size=args.batch_size,
                               seed=args.seed, progress=not args.quiet, agent_name=args.agent)
    except FileNotFoundError as exc:
        print(f"cubeworld eval-real: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.out:
        result.save(args.out)
        print(f"per-photo results written to {args.out}")
    return 0


def _bias(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation import evaluate
    from evaluation.real import bias_scores

    agent = load_agent(args.agent, seed=args.seed, adapter=args.adapter)
    result = evaluate(agent, args.env, n_episodes=args.episodes, seed=args.seed, batch_size=args.batch_size,
                      progress=not args.quiet)
    result.agent = args.agent
    report = bias_scores(result)
    print(report.summary())
    if args.out:
        report.save(args.out)
        print(f"bias scores written to {args.out}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval-real`` and ``bias`` to the ``cubeworld`` command."""
    ev = subparsers.add_parser(
        "eval-real",
        help="evaluate an agent on real block-tower photos against the labels and human participants",
        description="Run an agent once on every photo of a folder laid out like ../shared/data/lerer-dev "
        "(images/, labels.csv, optional human_responses.csv) through RealTowerStability-v0; print accuracy "
        "with a 95%% interval, human accuracy, Cohen's kappa against every participant (mean, bootstrap "
        "interval over photos) and against the labels, and accuracy and T_pref by number of blocks.",
    )
    ev.add_argument("--data", required=True, metavar="DIR", help="the photo folder (images/ + labels.csv)")
    ev.add_argument("--agent", required=True, help="agent spec, e.g. perceive, random, vlm:tiny")
    ev.add_argument("--adapter", default=None, help="PEFT adapter directory for vlm: agents")
    ev.add_argument("--image-size", type=int, default=256, help="square image side in pixels (default: 256)")
    ev.add_argument("--batch-size", type=int, default=16, help="observations per act() call")
    ev.add_argument("--seed", type=int, default=0, help="agent and bootstrap seed (default: 0)")
    ev.add_argument("--out", default=None, metavar="FILE.json", help="write the full result as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval_real)

    bi = subparsers.add_parser(
        "bias",
        help="T_pref bias score of an agent on TopBlockStability-v0, by blocks and difficulty",
        description="Evaluate an agent on seeded TopBlockStability-v0 episodes and print T_pref = "
        "tanh((recall - specificity) / specificity) with positive class 'stable', overall, by number of "
        "blocks and by difficulty d = ||offset| - 0.5| (block edges from the tipping threshold).",
    )
    bi.add_argument("--agent", required=True, help="agent spec, e.g. perceive, random, vlm:tiny")
    bi.add_argument("--env", default="TopBlockStability-v0", help="a binary env id (default: TopBlockStability-v0)")
    bi.add_argument("-n", "--episodes", type=int, default=200, help="episodes (default: 200)")
    bi.add_argument("--seed", type=int, default=0, help="first episode seed and agent seed (default: 0)")
    bi.add_argument("--adapter", default=None, help="PEFT adapter directory for vlm: agents")
    bi.add_argument("--batch-size", type=int, default=16, help="observations per act() call")
    bi.add_argument("--out", default=None, metavar="FILE.json", help="write the scores as JSON here")
    bi.add_argument("--quiet", action="store_true", help="no progress bar")
    bi.set_defaults(func=_bias)
