"""Throughput of DESIGN.md section 8's worlds: episodes per second, against the physics-core floor.

For each world id and cell (:data:`CELLS`: the smallest and the largest scenes of each world,
7-cube towers and 15-block pyramids among them), seeds ``0 .. n - 1``, in one process:

* ``env``: ``reset(seed) + step(answer)`` through ``gym.make`` (Gymnasium's default wrappers),
  answers drawn uniformly from the two legal ones;
* ``floor``: the same scenes through the physics core alone, no Gymnasium, parsing or ``info``:
  the family's generator on ``default_rng(seed)`` (how Gymnasium seeds ``np_random``), then
  :class:`envs.physics.World` ``load``, ``render`` (256 x 256), ``settle`` and the world's
  question (:attr:`envs.worlds.FamilySpec.question`: for a counterfactual, the second
  simulation without the removed block). The answer of a binary world needs no simulation.

``env/floor`` is the time ratio: what the environment adds (``info``, the centre-of-mass rule's
``com_margin``, the observation copy). Both are one core; the world's own cost, which grows with
its blocks and its solver iterations, is the floor.

Clocks: ``--clock cpu`` (the default) divides by this process's CPU time (``time.process_time``):
episodes per CPU-second, i.e. per core, and close to what an idle core gives even when other jobs
share the machine (pybullet in DIRECT mode computes in this process, on one thread). ``--clock
wall`` divides by elapsed time, which is only meaningful on an otherwise idle machine.

    python benchmarks/world_throughput.py [--episodes 100]

:mod:`env_throughput` prints this table after its own.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import envs
from envs.answers import sample_legal_answer
from envs.tower_env import ALL_TASKS
from envs.worlds import FAMILY_SPECS

# World id -> cells: (label, gym.make kwargs); each world's smallest and largest scenes.
CELLS: dict[str, list[tuple[str, dict]]] = {
    "TowerStability-v0": [("2 cubes", {"n_blocks": (2, 2)}), ("7 cubes", {"n_blocks": (7, 7)})],
    "PyramidCounterfactual-v0": [("2 rows, 3 blocks", {"rows": (2, 2)}), ("5 rows, 15 blocks", {"rows": (5, 5)})],
    "ShapeStacksStability-v0": [("height 2", {"height": (2, 2)}), ("height 6", {"height": (6, 6)})],
}


def _task(env_id: str) -> tuple[str, str]:
    family, fmt, _ = ALL_TASKS[gym.spec(env_id).kwargs["task"]]
    return family, fmt


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def bench_env(env_id: str, kwargs: dict, seeds: range, clock: str = "cpu") -> float:
    _, fmt = _task(env_id)
    rng = np.random.default_rng(0)
    answers = [sample_legal_answer(fmt, rng) for _ in seeds]
    env = gym.make(env_id, **kwargs)
    start = CLOCKS[clock]()
    for seed, answer in zip(seeds, answers):
        env.reset(seed=seed)
        env.step(answer)
    elapsed = CLOCKS[clock]() - start
    env.close()
    return len(seeds) / elapsed


def bench_floor(env_id: str, kwargs: dict, seeds: range, clock: str = "cpu") -> float:
    family, _ = _task(env_id)
    spec = FAMILY_SPECS[family]
    block_range = kwargs.get(spec.range_kwarg, ALL_TASKS[gym.spec(env_id).kwargs["task"]][2])
    extra = {k: v for k, v in kwargs.items() if k in spec.kwargs}
    world = spec.make_world()
    start = CLOCKS[clock]()
    for seed in seeds:
        scene = spec.generate(np.random.default_rng(seed), block_range, **extra)
        world.load(scene)
        world.render(256, 256)
        spec.question(world, scene, world.settle())
    elapsed = CLOCKS[clock]() - start
    world.close()
    return len(seeds) / elapsed


def run(episodes: int, ids: list[str] | None = None, clock: str = "cpu") -> list[tuple[str, str, float, float]]:
    """``(env id, cell, env episodes/s, floor episodes/s)`` for each world of ``ids`` (default: every
    registered one) and each of its cells, seconds by ``clock`` (a key of :data:`CLOCKS`)."""
    rows = []
    for env_id in ids or envs.WORLD_ENV_IDS:
        for label, kwargs in CELLS.get(env_id, [("default", {})]):
            seeds = range(episodes)
            bench_env(env_id, kwargs, range(5))  # warm-up: the room render and first-call caches
            rows.append((env_id, label, bench_env(env_id, kwargs, seeds, clock), bench_floor(env_id, kwargs, seeds, clock)))
    return rows


def print_table(rows: list[tuple[str, str, float, float]], clock: str = "cpu") -> None:
    print(f"worlds, episodes per {'CPU-second of one process' if clock == 'cpu' else 'wall-clock second'}:")
    print(f"{'world id':<26} {'cell':<18} {'env eps/s':>9} {'floor eps/s':>11} {'env/floor time':>14}")
    for env_id, label, env_rate, floor_rate in rows:
        print(f"{env_id:<26} {label:<18} {env_rate:>9.1f} {floor_rate:>11.1f} {floor_rate / env_rate:>14.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100, help="episodes per cell and contender (default 100)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: episodes per CPU-second of this process (per core, robust to other load); "
                             "wall: per elapsed second (default cpu)")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    print_table(run(args.episodes, clock=args.clock), args.clock)


if __name__ == "__main__":
    main()
