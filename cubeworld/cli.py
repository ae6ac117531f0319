"""The ``cubeworld`` command: thin; it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .cli_decoding import add_decoding_arguments
from .cli_matrix import check_env_kwargs, env_kwargs_arg


def _demo(args: argparse.Namespace) -> int:
    from .demo import format_table, grid_name, run_demo

    rows = run_demo(args.out, n_episodes=args.episodes, n_images=args.images, seed=args.seed,
                    style=args.style, randomise=args.randomise)
    print(format_table(rows))
    print(f"example images (and episode strips of the multi-step envs) written to {args.out}/, "
          f"all first images in {args.out}/{grid_name(args.style, args.randomise)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from agents.factory import load_agent
    from evaluation import evaluate

    from .cli_decoding import decoding_from_args

    check_env_kwargs([args.env], args.env_kwargs)
    agent = load_agent(args.agent, seed=args.seed, sampling=decoding_from_args(args),
                       max_history_turns=args.max_history_turns)
    result = evaluate(agent, args.env, n_episodes=args.episodes, seed=args.seed,
                      batch_size=args.batch_size, progress=not args.quiet, env_kwargs=args.env_kwargs)
    result.agent = args.agent
    print(result.summary())
    if args.out:
        result.save(args.out)
        print(f"per-episode results written to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig
    from training.trainer import Trainer

    config = TrainConfig.from_namespace(args)
    result = Trainer(config).train(resume=args.resume, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return 0  # a data-parallel run (torchrun): rank 0 reports it
    print(f"run: {result.output_dir} ({result.steps} steps; TensorBoard: tensorboard --logdir "
          f"{result.output_dir / 'tensorboard'}; metrics: {result.output_dir / 'metrics.jsonl'})")
    shown = result.after or result.before
    if shown is not None:
        from evaluation.evaluate import describe_decoding

        print(f"held-out decoding: {describe_decoding(shown.decoding)}")
    rows = result.per_env
    for env_id, row in rows.items():
        if len(rows) > 1:
            print(f"{env_id}:")
        for label, ev in (("before training", row.get("before")), ("after training", row.get("after")),
                          (f"best constant {row.get('constant_answer')}", row.get("constant_baseline"))):
            if ev is not None:
                success = "" if ev.success_at_k is None else (
                    f"  success@1 {ev.success_at_k[0]:.3f} @{len(ev.success_at_k)} {ev.success_at_k[-1]:.3f} "
                    f"AUCCESS {ev.auccess:.3f}")
                print(f"held-out mean {'return' if success else 'reward'}, {label:<38} {ev.mean_reward:8.3f}  95% CI "
                      f"[{ev.ci95[0]:.3f}, {ev.ci95[1]:.3f}]  legal {ev.legal_rate:.3f}  ({ev.n_episodes} episodes)"
                      f"{success}")
        if row.get("after") is not None and row.get("constant_baseline") is not None:
            beat = row["after"].ci95[0] > row["constant_baseline"].ci95[1]
            print(f"beats the image-blind shortcut (95% intervals apart): {'yes' if beat else 'no'}")
    return 0


def _train_sb3(args: argparse.Namespace) -> int:
    from agents.sb3 import SB3Agent, train_ppo
    from evaluation import evaluate

    check_env_kwargs([args.env], args.env_kwargs)
    model = train_ppo(args.env, total_timesteps=args.timesteps, seed=args.seed, image_size=args.image_size,
                      env_kwargs=args.env_kwargs)
    agent = SB3Agent(model)
    agent.save(args.out)
    print(f"PPO model saved to {args.out}; evaluate it with: cubeworld eval --agent sb3:{args.out} --env ENV_ID")
    result = evaluate(agent, args.env, n_episodes=args.eval_episodes, seed=args.eval_seed, env_kwargs=args.env_kwargs)
    print(result.summary())
    return 0


# Modules that define one subcommand each with ``add_subcommand(subparsers)``; the
# subcommand's handler is set with ``set_defaults(func=...)`` and returns an exit code.
SUBCOMMAND_MODULES: tuple[str, ...] = ("cubeworld.cli_probe", "cubeworld.cli_attention", "cubeworld.cli_real",
                                       "cubeworld.cli_matrix", "cubeworld.cli_landscape", "cubeworld.cli_pretrain",
                                       "cubeworld.cli_curves", "cubeworld.cli_export", "cubeworld.cli_serve")


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
        "reward of a random legal answer and of the optimal answer over N seeds (multi-step envs: "
        "mean return, plus one episode strip of the oracle and one of a random agent).",
    )
    demo.add_argument("--out", default="examples", help="folder for the PNGs (default: examples)")
    demo.add_argument("-n", "--episodes", type=int, default=50, help="seeds per env (default: 50)")
    demo.add_argument("--images", type=int, default=4, help="example episodes per env (default: 4)")
    demo.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    from envs.styles import STYLES

    demo.add_argument("--style", choices=sorted(STYLES), default="plain",
                      help="rendering style of every env (DESIGN.md section 9; default: plain)")
    demo.add_argument("--randomise", action="store_true", help="domain randomisation at its default amounts")
    demo.set_defaults(func=_demo)

    import configs
    from agents.factory import AGENT_SPECS
    from training.config import TrainConfig

    ev = sub.add_parser(
        "eval",
        help="evaluate an agent on one environment",
        description="Run an agent on seeded episodes of one environment; print mean reward with a "
        "95% bootstrap interval, legal-answer rate and outcomes. Agents: "
        + "; ".join(f"{k}: {v}" for k, v in AGENT_SPECS.items()),
    )
    ev.add_argument("--agent", required=True, help="agent spec, e.g. oracle, random, perceive, vlm:tiny, "
                    "vlm:tiny-base+adapter=RUN/checkpoints/step-000200")
    ev.add_argument("--env", required=True, help="environment id, e.g. TopBlockXOnly-v0")
    ev.add_argument("--env-kwargs", type=env_kwargs_arg, default=None, metavar="JSON",
                    help='gym.make keyword arguments, e.g. \'{"n_blocks": [4, 4]}\' (default: none)')
    ev.add_argument("--max-history-turns", type=int, default=None, metavar="N",
                    help="multi-step envs: earlier turns a vlm: agent replays in its chat (default: all)")
    ev.add_argument("-n", "--episodes", type=int, default=100, help="episodes (default: 100)")
    ev.add_argument("--seed", type=int, default=0, help="first episode seed and VLM sampling seed (default: 0)")
    ev.add_argument("--out", default=None, help="write the full result as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    add_decoding_arguments(ev)
    ev.set_defaults(func=_eval)

    tr = sub.add_parser(
        "train",
        help="train a LoRA adapter with GRPO, GSPO or SFT (default: tiny base, TopBlockXOnly-v0, GRPO, CPU)",
        usage="%(prog)s [--config FILE_OR_NAME] [--set KEY=VALUE ...] [--FIELD-NAME VALUE ...] [--resume] [--quiet]",
        description="Train the LoRA adapter of a VLM policy on environment rollouts. Without options it "
        "runs the quickstart: the embedded tiny base model on TopBlockXOnly-v0 with GRPO on the CPU, and "
        "prints the held-out reward before and after training. A run is --config (a YAML file or a shipped "
        "name: " + ", ".join(configs.names()) + "), then each --set, then each field flag.",
    )
    TrainConfig.add_arguments(tr)  # --config, --set and one flag per field, with its help and default
    tr.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    sb3 = sub.add_parser(
        "train-sb3",
        help="train the stable-baselines3 PPO pixel baseline (no language) on one env",
        description="Train a PPO CNN policy on the image alone (agents.sb3) and evaluate it on held-out seeds.",
    )
    sb3.add_argument("--env", default="TopBlockXOnly-v0", help="environment id (default: TopBlockXOnly-v0)")
    sb3.add_argument("--timesteps", type=int, default=14336, help="PPO environment steps (default: 14336)")
    sb3.add_argument("--image-size", type=int, default=64, help="policy input size in pixels (default: 64)")
    sb3.add_argument("--seed", type=int, default=0)
    sb3.add_argument("--out", default="runs/ppo.zip", help="where the SB3 model is saved")
    sb3.add_argument("--eval-episodes", type=int, default=100)
    sb3.add_argument("--eval-seed", type=int, default=10_000, help="first held-out seed (default: 10000)")
    sb3.add_argument("--env-kwargs", type=env_kwargs_arg, default=None, metavar="JSON",
                     help="gym.make keyword arguments for training and the held-out evaluation, e.g. "
                          "'{\"style\": \"lerer\", \"randomise\": true}' (default: none)")
    sb3.set_defaults(func=_train_sb3)

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    try:
        return args.func(args)
    except user_errors() as exc:
        print(f"cubeworld {args.command}: error: {exc}", file=sys.stderr)
        return 2


# Exceptions that mean bad input, each with a message naming the value and the fix; anything
# else is a bug and keeps its traceback. (module, name): looked up only once that module is
# loaded, since an exception of a module never imported cannot have been raised, and importing
# training.trainer (torch) just to name its exception would slow every error.
_USER_ERRORS = (("gymnasium.error", "Error"), ("agents.vlm", "ModelNotFoundError"),
                ("training.trainer", "NothingToResumeError"), ("agents.backends.vllm_server", "RolloutServerError"))


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types :func:`main` prints as one ``cubeworld CMD: error: ...`` line (exit code 2)."""
    loaded = (getattr(sys.modules[m], name) for m, name in _USER_ERRORS if m in sys.modules)
    return (ValueError, ImportError, FileExistsError, *loaded)
