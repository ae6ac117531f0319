"""PPO from pixels (stable-baselines3) on one x task: learning curve and transfer.

Answers the paper's question -- does interaction teach intuitive physics? --
for a learner without language: a PPO ``CnnPolicy`` (SB3's NatureCNN) sees
only the image, downscaled to ``--image-size`` pixels, and acts in ``[-1, 1]``,
written as the text answer by :class:`agents.sb3.TextActionWrapper`, so every
reward is the environment's own.

How it differs from the paper's RL runs: no language model and no prompt; a
Gaussian policy over a continuous action instead of sampled text; PPO with a
value baseline instead of GRPO's group-normalised advantages; tens of
thousands of single-answer episodes instead of a few hundred steps of 16-answer
groups; CPU budget of ~10 minutes.

Printed:

1. Learning curve: per chunk of ``--chunk`` training steps (= episodes), the
   mean training reward (stochastic policy, from SB3's ``Monitor``) and the
   deterministic policy's mean reward on ``--val-episodes`` validation seeds
   starting at ``--val-seed`` (20 000: disjoint from the test seeds).
2. Generalisation: mean reward (95% bootstrap CI, by :func:`evaluation.evaluate`)
   on ``--n-eval`` held-out seeds from ``--eval-seed`` (10 000; training draws
   its scenes from the RNG streams of seeds ``seed .. seed + n_envs - 1``) on
   the trained task, ``SideBlockXOnly-v0`` and ``SideBlockXY-v0``, next to the
   constant answer 0, a random legal answer and the oracle (the ceiling).
   On ``SideBlockXY-v0`` the 1-D policy's x is paired with a fixed up of 300
   (``agents.sb3.FIXED_UP``: the tallest side-block tower, the lowest up that
   never lands inside a tower); the constant baseline answers ``0, 300`` and
   the row "oracle x, up 300" is the best that pairing can score.

Usage::

    python benchmarks/sb3_baseline.py                      # defaults: ~10 min on 2 CPU cores
    python benchmarks/sb3_baseline.py --timesteps 4096 --chunk 1024 --seed 1
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from agents.baselines import ConstantAgent, OracleAgent, RandomAgent
from agents.sb3 import FIXED_UP, SB3Agent, episode_rewards, make_ppo
from evaluation import evaluate

TRANSFER_ENVS = ("SideBlockXOnly-v0", "SideBlockXY-v0")


class _OracleXFixedUp:
    """The oracle's x with ``up = FIXED_UP``: the ceiling of an x-only policy on SideBlockXY-v0."""

    def act(self, observations):
        answers = []
        for obs in observations:
            x = re.search(r"<answer>\s*([+-]?\d+)", obs["info"]["optimal_action"]).group(1)
            answers.append(f"<answer>{x}, {FIXED_UP}</answer>")
        return answers


def _constant(env_id: str) -> str:
    return f"<answer>0, {FIXED_UP}</answer>" if "XY" in env_id else "<answer>0</answer>"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="TopBlockXOnly-v0", help="training env id (an x task)")
    p.add_argument("--timesteps", type=int, default=14336, help="training steps (= episodes)")
    p.add_argument("--chunk", type=int, default=1024, help="steps per learning-curve row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="observation side, pixels (>= 36)")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--n-steps", type=int, default=32, help="rollout steps per env and update")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--log-std-init", type=float, default=-2.0)
    p.add_argument("--n-eval", type=int, default=100, help="held-out test episodes per env")
    p.add_argument("--eval-seed", type=int, default=10_000, help="first held-out test seed")
    p.add_argument("--val-episodes", type=int, default=64, help="validation episodes per curve row")
    p.add_argument("--val-seed", type=int, default=20_000, help="first validation seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--save", default=None, help="save the trained model here (.zip)")
    args = p.parse_args(argv)
    rollout = args.n_steps * args.n_envs
    if args.chunk % rollout:
        p.error(f"--chunk {args.chunk} must be a multiple of n_steps * n_envs = {rollout}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model = make_ppo(
        args.env, args.seed, args.image_size, n_envs=args.n_envs, n_steps=args.n_steps,
        batch_size=args.batch_size, n_epochs=args.n_epochs, learning_rate=args.lr,
        log_std_init=args.log_std_init,
    )
    print(f"PPO CnnPolicy on {args.env}: {args.timesteps} steps, {args.image_size} px, seed {args.seed}, "
          f"{args.n_envs} envs x {args.n_steps} steps/update, batch {args.batch_size}, "
          f"{args.n_epochs} epochs, lr {args.lr}, log_std_init {args.log_std_init}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| steps | train reward (stochastic) | val reward (deterministic) | wall s |")
    print("|---:|---:|---:|---:|")
    start, seen = time.perf_counter(), 0
    while model.num_timesteps < args.timesteps:
        model.learn(args.chunk, reset_num_timesteps=False)
        rewards = episode_rewards(model)
        val = evaluate(SB3Agent(model), args.env, args.val_episodes, args.val_seed, batch_size=64)
        print(f"| {model.num_timesteps} | {rewards[seen:].mean():.2f} | {val.mean_reward:.2f} "
              f"| {time.perf_counter() - start:.0f} |", flush=True)
        seen = len(rewards)
    train_s = time.perf_counter() - start
    if args.save:
        SB3Agent(model).save(args.save)  # atomically, SB3's zip (".zip" appended when missing)

    print(f"\nHeld-out test: {args.n_eval} episodes per env, seeds {args.eval_seed}.."
          f"{args.eval_seed + args.n_eval - 1}; mean reward [95% CI]; stable = fraction of stable outcomes\n")
    print("| env | agent | mean reward | 95% CI | stable |")
    print("|---|---|---:|---|---:|")
    for env_id in (args.env, *[e for e in TRANSFER_ENVS if e != args.env]):
        agents = [
            (f"PPO ({args.env})", SB3Agent(model)),
            (f"constant {_constant(env_id)}", ConstantAgent(_constant(env_id))),
            ("random legal", RandomAgent(seed=args.seed)),
            ("oracle", OracleAgent()),
        ]
        if "XY" in env_id:
            agents.append((f"oracle x, up {FIXED_UP}", _OracleXFixedUp()))
        for name, agent in agents:
            r = evaluate(agent, env_id, args.n_eval, args.eval_seed, batch_size=32)
            stable = r.outcome_counts.get("stable", 0) / r.n_episodes
            print(f"| {env_id} | {name} | {r.mean_reward:.2f} | [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}] "
                  f"| {stable:.2f} |", flush=True)
    answers = SB3Agent(model, "x").act(_sample_observations(args.env, args.eval_seed, 200))
    xs = np.array([int(re.search(r"-?\d+", a).group()) for a in answers])
    print(f"\nPPO answers on {args.env} test scenes: x mean {xs.mean():.0f}, std {xs.std():.0f}, "
          f"range [{xs.min()}, {xs.max()}] units; training took {train_s:.0f} s")


def _sample_observations(env_id: str, seed: int, n: int) -> list[dict]:
    import gymnasium as gym

    env = gym.make(env_id)
    observations = [env.reset(seed=seed + i)[0] for i in range(n)]
    env.close()
    return observations


if __name__ == "__main__":
    main()
