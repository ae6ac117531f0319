"""Environment throughput: episodes per second, against the raw-pybullet floor, and vectorised.

For each env id, in one process:

* ``env``: ``reset(seed) + step(answer)`` through ``gym.make`` (with Gymnasium's
  default wrappers), answers drawn uniformly from the legal range;
* ``raw``: the same work written as bare pybullet calls (build the scene,
  render it, settle it; build the answer's result, settle it), same scenes,
  same answers: the floor the environment's own overhead is measured against;
* ``raw, full room``: ``raw`` but rendering the floor and wall every frame
  instead of compositing over a cached room render (for context: what the
  renderer's trick saves).

Then ``gymnasium.vector.AsyncVectorEnv`` with 1 and 2 workers (same-step
autoreset, so every step is a whole episode); the speed-up is 2 workers
against the plain single-process ``env`` loop.

A second table does the same for the multi-step ids (``envs.MULTI_STEP_ENV_IDS``): steps
and episodes per second through ``gym.make`` against a raw floor that plays the same turns
(:mod:`multistep_throughput`, which says what each turn costs and how the two are checked to
agree). A third does the worlds of DESIGN.md section 8 (``envs.WORLD_ENV_IDS``), their smallest
and largest scenes (7-cube towers, 15-block pyramids), against the physics-core floor
(:mod:`world_throughput`).

A fourth table prices the rendering styles (DESIGN.md section 9, :mod:`envs.styles`): the
``env`` loop of each single-step id with ``style="lerer"``, with ``randomise=True`` (on the
lerer and on the plain look), against the default plain look, same seeds and answers, in the
same run (``--style-episodes``; 0 skips it).

    python benchmarks/env_throughput.py [--episodes 300] [--style-episodes 100] [--ids ID ...]

Goals (issue 2): >= 60 episodes/s per core, env <= 1.15x raw (multi-step too), >= 1.7x with 2 workers.
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import gymnasium as gym
import numpy as np
import pybullet as p

import envs
from envs.answers import parse_answer, sample_legal_answer
from envs.physics import GRAVITY, TIME_STEP
from envs.render import FLOOR_RGBA, LIGHT_DIRECTION, WALL_RGBA, WALL_Y, camera_matrices, room_image
from envs.scenes import side_block, top_block
from envs.tower_env import ALL_TASKS


def _episodes(env_id: str, n: int):
    """The seeds and answers every contender works through: seeds 0..n-1."""
    family, fmt, blocks = envs.TASKS[gym.spec(env_id).kwargs["task"]]
    env = gym.make(env_id)
    generator = top_block if family == "top_block" else side_block
    assert env.reset(seed=5)[1]["scene"] == generator(np.random.default_rng(5), blocks).to_dict()
    env.close()
    rng = np.random.default_rng(0)
    return [(seed, sample_legal_answer(fmt, rng)) for seed in range(n)]


def bench_env(env_id: str, episodes, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    start = time.perf_counter()
    for seed, answer in episodes:
        env.reset(seed=seed)
        env.step(answer)
    elapsed = time.perf_counter() - start
    env.close()
    return len(episodes) / elapsed


# --- the raw floor: bare pybullet, no Gymnasium, no parsing layer ---------------------------

def _raw_build(c, cubes, full_room):
    p.resetSimulation(physicsClientId=c)
    p.setGravity(0, 0, -GRAVITY, physicsClientId=c)
    p.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, deterministicOverlappingPairs=1, physicsClientId=c)
    plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
    rgba = FLOOR_RGBA if full_room else (0, 0, 0, 0)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 30, 0.01], rgbaColor=rgba, physicsClientId=c)
    p.createMultiBody(0, plane, vis, physicsClientId=c)
    if full_room:
        wall = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 0.01, 15], rgbaColor=WALL_RGBA, physicsClientId=c)
        p.createMultiBody(0, -1, wall, basePosition=[0, WALL_Y, 15], physicsClientId=c)
    bodies = []
    for x, z, color in cubes:
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.5] * 3, physicsClientId=c)
        v = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.5] * 3, rgbaColor=[*color, 1], physicsClientId=c)
        b = p.createMultiBody(1.0, col, v, basePosition=[x, 0, z], physicsClientId=c)
        p.changeDynamics(b, -1, lateralFriction=0.6, restitution=0.0, physicsClientId=c)
        bodies.append(b)
    return bodies


@functools.cache
def _matrices(size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The env's camera as pybullet's flat column-major tuples (the same floats), made once per size."""
    view, proj = camera_matrices(size, size)
    return tuple(view.T.ravel().tolist()), tuple(proj.T.ravel().tolist())


def _raw_render(c, size, full_room):
    view, proj = _matrices(size)
    _, _, rgba, _, seg = p.getCameraImage(size, size, view, proj, lightDirection=LIGHT_DIRECTION,
                                          lightAmbientCoeff=0.55, lightDiffuseCoeff=0.5,
                                          lightSpecularCoeff=0.0, shadow=0,
                                          renderer=p.ER_TINY_RENDERER, physicsClientId=c)
    rgb = np.asarray(rgba, np.uint8).reshape(size, size, 4)[:, :, :3]
    if full_room:
        return rgb
    return np.where((np.asarray(seg).reshape(size, size) >= 0)[:, :, None], rgb, room_image(size, size))


def _raw_settle(c, bodies):
    start = [p.getBasePositionAndOrientation(b, physicsClientId=c) for b in bodies]
    quiet = 0
    for _ in range(960):
        p.stepSimulation(physicsClientId=c)
        speed = 0.0
        for b, (p0, q0) in zip(bodies, start):
            pos, q = p.getBasePositionAndOrientation(b, physicsClientId=c)
            dot = min(1.0, abs(sum(a * b for a, b in zip(q, q0))))
            if math.dist(pos, p0) > 0.05 or 2 * math.acos(dot) > math.radians(5):
                return False
            lin, ang = p.getBaseVelocity(b, physicsClientId=c)
            speed = max(speed, math.hypot(*lin), math.hypot(*ang))
        quiet = quiet + 1 if speed < 1e-3 else 0
        if quiet >= 8:
            return True
    return True


def bench_raw(env_id: str, episodes, full_room: bool = False) -> float:
    family, fmt, blocks = envs.TASKS[gym.spec(env_id).kwargs["task"]]
    generator = top_block if family == "top_block" else side_block
    c = p.connect(p.DIRECT)
    start = time.perf_counter()
    for seed, answer in episodes:
        # Gymnasium seeds np_random as default_rng(seed) does: the env's scenes, drawn bare.
        scene = generator(np.random.default_rng(seed), blocks)
        cubes = [(cb.x, cb.z, [v / 255 for v in cb.color]) for cb in scene.cubes]
        bodies = _raw_build(c, cubes, full_room)
        _raw_render(c, 256, full_room)
        _raw_settle(c, bodies)
        value = parse_answer(answer, fmt).value
        if fmt == "binary" or value is None:
            continue
        t = scene.target
        x, z, color = cubes[t]
        if fmt == "x":
            cubes[t] = (x + value / 100, z if family == "top_block" else scene.goal_z, color)
        else:
            x, z = x + value[0] / 100, z + value[1] / 100
            if any(abs(x - o[0]) < 1 and abs(z - o[1]) < 1 for i, o in enumerate(cubes) if i != t):
                continue  # inside the tower: judged without simulation
            rest = scene.resting_z(x, below=z)
            if abs(rest - scene.goal_z) > 1e-6:
                continue  # on the floor: no taller tower, judged without simulation
            cubes[t] = (x, rest, color)
        _raw_settle(c, _raw_build(c, cubes, full_room))
    elapsed = time.perf_counter() - start
    p.disconnect(physicsClientId=c)
    return len(episodes) / elapsed


def bench_vector(env_id: str, n_steps: int, num_envs: int) -> float:
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode

    vec = AsyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    fmt = envs.TASKS[gym.spec(env_id).kwargs["task"]][1]
    rng = np.random.default_rng(0)
    vec.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n_steps):
        vec.step(tuple(sample_legal_answer(fmt, rng) for _ in range(num_envs)))
    elapsed = time.perf_counter() - start
    vec.close()
    return n_steps * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=300, help="episodes per env id and contender")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--style-episodes", type=int, default=100,
                        help="episodes per id and look in the style table (0: no style table)")
    parser.add_argument("--ids", nargs="+", choices=envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.WORLD_ENV_IDS,
                        metavar="ID", help="measure only these ids (default: every id but the real photos)")
    args = parser.parse_args()
    ids = args.ids or envs.ENV_IDS + envs.MULTI_STEP_ENV_IDS + envs.WORLD_ENV_IDS
    rows = []
    for env_id in (i for i in envs.ENV_IDS if i in ids):
        episodes = _episodes(env_id, args.episodes)
        bench_env(env_id, episodes[:20])  # warm-up: the room render and first-call caches
        env_rate = bench_env(env_id, episodes)
        raw_rate = bench_raw(env_id, episodes)
        full_rate = bench_raw(env_id, episodes, full_room=True)
        one = bench_vector(env_id, args.episodes // 2, 1)
        many = bench_vector(env_id, args.episodes // 2, args.workers)
        rows.append((env_id, env_rate, raw_rate, full_rate, one, many))
    if rows:
        print(f"{'env id':<22} {'env eps/s':>9} {'raw eps/s':>9} {'env/raw time':>12} "
              f"{'raw full-room':>13} {'async x1':>9} {f'async x{args.workers}':>9} {'speed-up':>8}")
    for env_id, env_rate, raw_rate, full_rate, one, many in rows:
        print(f"{env_id:<22} {env_rate:>9.1f} {raw_rate:>9.1f} {raw_rate / env_rate:>12.3f} "
              f"{full_rate:>13.1f} {one:>9.1f} {many:>9.1f} {many / env_rate:>8.2f}")
    multi = [i for i in envs.MULTI_STEP_ENV_IDS if i in ids]
    if multi:
        import multistep_throughput  # here, not at the top: it imports this module's raw helpers

        if rows:
            print()
        multistep_throughput.print_table(multistep_throughput.run(multi, args.episodes))
    worlds = [i for i in envs.WORLD_ENV_IDS if i in ids]
    if worlds:
        import world_throughput

        if rows or multi:
            print()
        world_throughput.print_table(world_throughput.run(max(1, args.episodes // 3), worlds))
    styled = [i for i in envs.ENV_IDS + envs.WORLD_ENV_IDS if i in ids]
    if styled and args.style_episodes > 0:
        print()
        print_style_table(style_rows(styled, args.style_episodes))


# (label, env kwargs) of the looks the style table compares; the first is the reference.
LOOKS = (("plain", {}), ("lerer", {"style": "lerer"}), ("lerer+rand", {"style": "lerer", "randomise": True}),
         ("plain+rand", {"randomise": True}))


def style_rows(ids, n: int) -> list[tuple[str, list[float]]]:
    """Episodes/s of the ``env`` loop under each look of :data:`LOOKS`, per id (seeds 0..n-1, random legal answers)."""
    rows = []
    for env_id in ids:
        fmt = ALL_TASKS[gym.spec(env_id).kwargs["task"]][1]
        rng = np.random.default_rng(0)
        episodes = [(seed, sample_legal_answer(fmt, rng)) for seed in range(n)]
        rates = []
        for _, kwargs in LOOKS:
            bench_env(env_id, episodes[:5], **kwargs)  # warm-up: caches, textures, first backdrop
            rates.append(bench_env(env_id, episodes, **kwargs))
        rows.append((env_id, rates))
    return rows


def print_style_table(rows) -> None:
    head = "".join(f" {label + ' eps/s':>16}" for label, _ in LOOKS)
    ratios = "".join(f" {label + ' x':>13}" for label, _ in LOOKS[1:])
    print(f"{'env id (styles)':<26}{head}{ratios}")
    for env_id, rates in rows:
        print(f"{env_id:<26}" + "".join(f" {r:>16.1f}" for r in rates)
              + "".join(f" {rates[0] / r:>13.2f}" for r in rates[1:]))
    print("(x: time per episode against plain, same run)")


if __name__ == "__main__":
    main()
