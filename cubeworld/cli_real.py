"""``cubeworld eval-real`` (real photos, human alignment), ``cubeworld real-seeds`` (its results
pooled over training seeds), ``cubeworld bias`` (T_pref) and
``cubeworld calibrate-perceive`` (the perceive agent's photo constants, from renders): thin."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_decoding import add_decoding_arguments
from .cli_matrix import env_kwargs_arg


def _eval_real(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation.real import evaluate_real

    from .cli_decoding import decoding_from_args

    try:
        prompt = _photo_prompt(args.prompt)
    except ValueError as exc:
        print(f"cubeworld eval-real: error: {exc}", file=sys.stderr)
        return 2
    agent = load_agent(args.agent, seed=args.seed, sampling=decoding_from_args(args))
    if args.leave_one_out and not callable(getattr(agent, "photo_candidates", None)):
        print(f"cubeworld eval-real: error: --leave-one-out needs an agent that declares the photo settings "
              f"it was tuned over (photo_candidates()), such as perceive; {args.agent!r} declares none",
              file=sys.stderr)
        return 2
    try:
        result = evaluate_real(agent, args.data, image_size=args.image_size, batch_size=args.batch_size,
                               seed=args.seed, progress=not args.quiet, agent_name=args.agent, prompt=prompt)
    except FileNotFoundError as exc:
        print(f"cubeworld eval-real: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.out:
        result.save(args.out)
        print(f"per-photo results written to {args.out}")
    if args.leave_one_out:
        _leave_one_out(agent, args)
    return 0


def _photo_prompt(text: str | None) -> str | None:
    """``--prompt``: None (the Lerer prompt), a task name (its prompt, if its ``Yes`` means stable) or text.

    Raises:
        ValueError: a task whose answers are not ``Yes`` / ``No`` with ``Yes`` = stable, as the photos are judged.
    """
    from envs.answers import is_binary
    from envs.prompts import PROMPTS, WORLD_PROMPTS, prompt_for
    from envs.tower_env import ALL_TASKS
    from envs.worlds import polarity

    if text is None or (text not in PROMPTS and text not in WORLD_PROMPTS):
        return text
    fmt = ALL_TASKS[text][1]
    labels, yes_means = polarity(text, fmt)
    if not is_binary(fmt) or labels != ("Yes", "No") or yes_means != "stable":
        asks = f"asks for {fmt} answers" if not is_binary(fmt) else \
            f"is answered {labels[0]} / {labels[1]} with {labels[0]} = {yes_means}"
        raise ValueError(f"--prompt {text}: that task {asks}, but the photos are judged Yes = stable; choose a "
                         "task asked that way (top_block_stability) or pass the text of a prompt")
    return prompt_for(text)


def _leave_one_out(agent: Any, args: argparse.Namespace) -> None:
    """Print (and with ``--out`` save next to it) the LOO accuracy over the agent's photo candidates."""
    from pathlib import Path

    from evaluation.loo import leave_one_out_accuracy

    loo = leave_one_out_accuracy(agent.photo_candidates(), args.data, image_size=args.image_size,
                                 batch_size=args.batch_size, seed=args.seed, progress=not args.quiet)
    print(f"\n{loo.summary()}")
    if args.out:
        path = Path(args.out).with_suffix(".loo.json")
        loo.save(path)
        print(f"leave-one-out result written to {path}")


def _bias(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation import evaluate
    from evaluation.real import bias_scores

    from .cli_decoding import decoding_from_args
    from .cli_matrix import check_env_kwargs

    check_env_kwargs([args.env], args.env_kwargs)
    agent = load_agent(args.agent, seed=args.seed, sampling=decoding_from_args(args))
    result = evaluate(agent, args.env, n_episodes=args.episodes, seed=args.seed, batch_size=args.batch_size,
                      progress=not args.quiet, env_kwargs=args.env_kwargs)
    result.agent = args.agent
    report = bias_scores(result)
    print(report.summary())
    if args.out:
        report.save(args.out)
        print(f"bias scores written to {args.out}")
    return 0


def _real_seeds(args: argparse.Namespace) -> int:
    from envs.atomic import write_text_atomic
    from evaluation.matrix import csv_text
    from evaluation.real import RealEvaluationResult
    from evaluation.real_seeds import REAL_SEEDS_COLUMNS, format_real_seed_rows, real_seed_rows, result_name

    results = {}
    for path in args.results:
        name = result_name(path)
        if name in results:
            print(f"cubeworld real-seeds: error: two results named {name!r}; rename one file", file=sys.stderr)
            return 2
        try:
            results[name] = RealEvaluationResult.load(path)
        except FileNotFoundError:
            print(f"cubeworld real-seeds: error: no result file {path!r}; write one with "
                  "cubeworld eval-real --out", file=sys.stderr)
            return 2
    try:
        rows = real_seed_rows(results)
    except ValueError as exc:
        print(f"cubeworld real-seeds: error: {exc}", file=sys.stderr)
        return 2
    print(format_real_seed_rows(rows))
    if args.out:
        write_text_atomic(args.out, csv_text(REAL_SEEDS_COLUMNS, rows))
        print(f"pooled rows written to {args.out}")
    return 0


def _calibrate_perceive(args: argparse.Namespace) -> int:
    from agents.perceive_calibration import run

    return run(args)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval-real``, ``real-seeds``, ``bias`` and ``calibrate-perceive`` to the ``cubeworld`` command."""
    ca = subparsers.add_parser(
        "calibrate-perceive",
        help="choose the perceive agent's photo constants on lerer-style renders (never on photos)",
        description="Render seeded style='lerer', randomise=True scenes of TopBlockStability-v0 and "
        "TowerStability-v0 (2-4 cubes) with the Lerer photos' four colours, run the perceive agent's photo "
        "pipeline on them over a grid of its constants, and choose the most accurate against the renders' "
        "ground truth (ties: the smaller top-cube offset error). The shipped constants are "
        "agents/data/perceive_photo.json, written by the default arguments.",
    )
    # The same arguments as agents.perceive_calibration.add_arguments, spelt out so that building the
    # parser does not import the physics and image stack.
    ca.add_argument("--n", type=int, default=200, help="renders per env (default: 200, the shipped file's)")
    ca.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    ca.add_argument("--out", default=None, metavar="FILE.json",
                    help="write the chosen constants and the table here (shipped: agents/data/perceive_photo.json)")
    ca.set_defaults(func=_calibrate_perceive)

    ev = subparsers.add_parser(
        "eval-real",
        help="evaluate an agent on real block-tower photos against the labels and human participants",
        description="Run an agent once on every photo of a folder laid out like ../shared/data/lerer-dev "
        "(images/, labels.csv, optional human_responses.csv) through RealTowerStability-v0; print accuracy "
        "with a 95% interval, human accuracy, Cohen's kappa against every participant (mean, bootstrap "
        "interval over photos) and against the labels, and accuracy and T_pref by number of blocks.",
    )
    ev.add_argument("--data", required=True, metavar="DIR", help="the photo folder (images/ + labels.csv)")
    ev.add_argument("--agent", required=True,
                    help="agent spec, e.g. perceive, random, vlm:tiny, vlm:tiny-base+adapter=ADAPTER_DIR")
    ev.add_argument("--image-size", type=int, default=256, help="square image side in pixels (default: 256)")
    ev.add_argument("--seed", type=int, default=0, help="agent and bootstrap seed (default: 0)")
    ev.add_argument("--out", default=None, metavar="FILE.json", help="write the full result as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--leave-one-out", action="store_true",
                    help="also report the leave-one-out accuracy over the photo settings the agent was tuned "
                    "over (agents with photo_candidates(), e.g. perceive): each photo is answered by the "
                    "setting most accurate on the others")
    ev.add_argument("--prompt", default=None, metavar="TASK|TEXT",
                    help="ask this instead of the Lerer prompt: a task's prompt by name (e.g. top_block_stability, "
                    "the question a TopBlockStability-v0 adapter was trained on; tasks whose Yes means 'falls' are "
                    "refused) or any text, verbatim; answers are judged Yes = stable")
    add_decoding_arguments(ev)
    ev.set_defaults(func=_eval_real)

    rs = subparsers.add_parser(
        "real-seeds",
        help="pool eval-real results over training seeds: mean and range per condition",
        description="Read eval-real result files (--out of cubeworld eval-real), name each by its file stem "
        "less 'real-', pool the names COND-sSEED per COND and print, per condition, the mean legal rate, "
        "the mean [min, max] over seeds of accuracy, kappa vs the human participants and T_pref, how many seeds beat the photos' "
        "majority answer (and with their 95% interval above it), and the fraction of photos every seed "
        "answers alike.",
    )
    rs.add_argument("results", nargs="+", metavar="FILE.json", help="eval-real result files, e.g. runs/x/real-*.json")
    rs.add_argument("--out", default=None, metavar="FILE.csv", help="also write the pooled rows as CSV here")
    rs.set_defaults(func=_real_seeds)

    bi = subparsers.add_parser(
        "bias",
        help="T_pref bias score of an agent on a binary env (TopBlockStability-v0, TowerStability-v0, ...), "
        "by blocks and difficulty",
        description="Evaluate an agent on seeded episodes of a binary env and print T_pref = "
        "tanh((recall - specificity) / specificity) with positive class 'stable' (whatever the question's "
        "wording: on TowerStability-v0 'No' means stable), overall, by number of blocks, by difficulty (block "
        "edges from the threshold: ||offset| - 0.5| on TopBlockStability-v0, |com_margin| on the worlds) and, "
        "where the world has them, by difficulty level (ShapeStacks easy / hard).",
    )
    bi.add_argument("--agent", required=True,
                    help="agent spec, e.g. perceive, random, vlm:tiny, vlm:tiny-base+adapter=ADAPTER_DIR")
    bi.add_argument("--env", default="TopBlockStability-v0", help="a binary env id (default: TopBlockStability-v0)")
    bi.add_argument("--env-kwargs", type=env_kwargs_arg, default=None, metavar="JSON",
                    help="gym.make keyword arguments as JSON, e.g. a split: '{\"n_blocks\": [5, 7]}'")
    bi.add_argument("-n", "--episodes", type=int, default=200, help="episodes (default: 200)")
    bi.add_argument("--seed", type=int, default=0, help="first episode seed and agent seed (default: 0)")
    bi.add_argument("--out", default=None, metavar="FILE.json", help="write the scores as JSON here")
    bi.add_argument("--quiet", action="store_true", help="no progress bar")
    add_decoding_arguments(bi)
    bi.set_defaults(func=_bias)
