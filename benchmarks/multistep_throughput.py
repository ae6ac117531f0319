"""Multi-step environment throughput: steps and episodes per second, against the raw-pybullet floor.

For each multi-step id (``envs.MULTI_STEP_ENV_IDS``, DESIGN.md section 7), in one process,
with the default feedback (``"outcome"``: every turn renders its result at rest):

* ``env``: ``reset(seed)``, then ``step(answer)`` until terminated or truncated, through
  ``gym.make`` (Gymnasium's default wrappers). Answers are drawn with a fixed numpy rng
  (``sample_legal_answer``; ``TowerBuild-v0`` from ``info["movable_colours"]``, so most
  moves name a cube that can be lifted) in an untimed first pass, which also warms the
  caches; the timed pass replays them.
* ``raw``: the same turns as bare pybullet calls, same scenes, same answers: per episode
  build the scene, render it, settle it to its verdict; per turn build the world of the
  answer's result, settle it to the verdict, keep simulating until everything is at rest,
  render the result at 256x256 over the cached room; sequential and build read the poses
  back as the next state. Only the pure geometry of ``envs.scenes`` / ``envs.build`` is
  borrowed (``resting_z``, ``place``, ``movable``, ``tower_stack``), no ``TowerEnv``,
  ``World`` or protocol class. Turns the env judges without simulating (an illegal answer,
  an x-y answer inside the tower or on the floor) are judged the same way here.

An assert checks that raw and env agree, episode by episode, on the turn count and on each
turn's outcome, reward, success, next state (``info["scene_now"]``, every pose exactly) and
the image it shows (every pixel), so the floor does the same work and not merely similar
work. Steps/s counts turns (resets included in the time); the ratio is env time / raw time.

Goal (as single-step, issue 2): env <= 1.15x raw.

Run through ``python benchmarks/env_throughput.py [--ids ...]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pybullet as p
from env_throughput import _raw_render, _raw_settle

from envs.answers import parse_answer, sample_legal_answer
from envs.build import colour_name, movable, place, tower_stack
from envs.physics import FRICTION, GRAVITY, HORIZON_S, REST_SPEED, REST_STEPS, TIME_STEP
from envs.protocols import SUCCESS_DISTANCE
from envs.rewards import ILLEGAL_REWARD, build_reward, placement_reward
from envs.scenes import Scene, side_block, top_block, tower_build
from envs.tower_env import ALL_TASKS, SETTLED_CONTACT_TOL

GENERATORS = {"top_block": top_block, "side_block": side_block, "build": tower_build}
HORIZON_STEPS = int(round(HORIZON_S / TIME_STEP))
# What leaves the world untouched: the next state is this one, and sequential / build show its
# picture again instead of simulating anything.
UNMOVED = ("unparseable", "out_of_range", "below_floor", "inside_tower", "unknown_colour")


def _task(env_id: str) -> tuple[str, str, tuple[int, int]]:
    return ALL_TASKS[gym.spec(env_id).kwargs["task"]]


def record(env_id: str, n: int):
    """Play seeds 0..n-1 once, untimed: the answers every contender replays and the env's own
    per-turn ``(outcome, reward, success, scene_now, image)`` that the raw loop must reproduce."""
    family, fmt, blocks = _task(env_id)
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    episodes, reference = [], []
    protocol = None
    for seed in range(n):
        _, info = env.reset(seed=seed)
        # Gymnasium seeds np_random as default_rng(seed) does: the raw loop draws the same scenes bare.
        assert info["scene"] == GENERATORS[family](np.random.default_rng(seed), blocks).to_dict(), seed
        protocol = (info["interaction"], info["max_turns"])
        answers, turns, done = [], [], False
        while not done:
            answer = sample_legal_answer(fmt, rng, colours=info.get("movable_colours"))
            obs, reward, terminated, truncated, info = env.step(answer)
            answers.append(answer)
            turns.append((info["outcome"], reward, info["success"], info["scene_now"], obs["image"]))
            done = terminated or truncated
        episodes.append((seed, answers))
        reference.append(turns)
    env.close()
    return episodes, reference, protocol


def bench_env(env_id: str, episodes) -> float:
    """Seconds for every episode through ``gym.make``."""
    env = gym.make(env_id)
    start = time.perf_counter()
    for seed, answers in episodes:
        env.reset(seed=seed)
        for answer in answers:
            _, _, terminated, truncated, _ = env.step(answer)
        assert terminated or truncated, f"seed {seed}: the replayed episode did not end where recorded"
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


# --- the raw floor: bare pybullet, the env's geometry but none of its classes ----------------

def _raw_load(c, scene: Scene) -> list[int]:
    """The world of ``scene``, call for call as the env builds it (same bodies, same order, so the
    simulation is bitwise the env's and the poses read back agree)."""
    p.resetSimulation(physicsClientId=c)
    p.setGravity(0, 0, -GRAVITY, physicsClientId=c)
    p.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, deterministicOverlappingPairs=1, physicsClientId=c)
    plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 30, 0.01], rgbaColor=(0, 0, 0, 0),
                              visualFramePosition=[0, 0, -0.01], physicsClientId=c)
    p.createMultiBody(0, plane, vis, physicsClientId=c)
    bodies = []
    for cube in scene.cubes:
        half = [cube.size / 2] * 3
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        v = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=[x / 255 for x in cube.color] + [1.0],
                                physicsClientId=c)
        b = p.createMultiBody(cube.size**3, col, v, basePosition=[cube.x, cube.y, cube.z],
                              baseOrientation=list(cube.orientation), physicsClientId=c)
        p.changeDynamics(b, -1, lateralFriction=FRICTION, restitution=0.0, physicsClientId=c)
        bodies.append(b)
    return bodies


def _raw_rest(c, bodies) -> None:
    """Simulate on until every cube is at rest (or the horizon): rest needs the speeds only."""
    quiet = 0
    for _ in range(HORIZON_STEPS):
        p.stepSimulation(physicsClientId=c)
        speed = 0.0
        for b in bodies:
            lin, ang = p.getBaseVelocity(b, physicsClientId=c)
            speed = max(speed, math.hypot(*lin), math.hypot(*ang))
        quiet = quiet + 1 if speed < REST_SPEED else 0
        if quiet >= REST_STEPS:
            return


def _raw_read(c, bodies, scene: Scene) -> Scene:
    """The poses the simulation left, as the next state (side block: tower by height, then the red
    cube, as the env orders it, so that the next turn's axis and goal height are the env's)."""
    cubes = []
    for cube, b in zip(scene.cubes, bodies):
        pos, orn = p.getBasePositionAndOrientation(b, physicsClientId=c)
        cubes.append(replace(cube, x=float(pos[0]), y=float(pos[1]), z=float(pos[2]),
                             orientation=tuple(float(q) for q in orn)))
    now = replace(scene, cubes=tuple(cubes))
    if now.family != "side_block":
        return now
    tower = sorted(now.tower, key=lambda cube: cube.z)
    return Scene(now.family, (*tower, now.cubes[now.target]), len(tower))


def _raw_judge(c, state: Scene, at_start: bool, answer: str, family: str, fmt: str):
    """One answer on ``state``: ``(outcome, distance, gain, height, result)``; ``result`` is
    ``(scene to show, simulate it to rest?, its bodies if already built)``, None if nothing moved."""
    parsed = parse_answer(answer, fmt)
    if not parsed.legal:
        return parsed.outcome, None, None, None, (state, True, None)
    if fmt == "colour_x":
        colour, x = parsed.value
        free = {colour_name(state.cubes[i].color): i for i in movable(state)}
        if colour not in free:
            return "unknown_colour", None, None, None, (state, True, None)
        before = len(tower_stack(state))
        placed = place(state, free[colour], x / 100.0)
        bodies = _raw_load(c, placed)
        if not _raw_settle(c, bodies):
            return "unstable", None, None, None, (placed, True, bodies)
        after = len(tower_stack(placed))
        return "stable", None, after - before, after, (placed, True, bodies)
    target = state.cubes[state.target]
    if fmt == "x":
        x = target.x + parsed.value / 100.0
        placed = state.with_target_at(x, target.z if family == "top_block" else state.goal_z)
        distance = abs(x - state.axis)
    else:
        dx, up = parsed.value
        x, z = target.x + dx / 100.0, target.z + up / 100.0
        distance = math.hypot(x - state.axis, z - state.goal_z)
        requested = state.with_target_at(x, z)
        tol = 1e-6 if at_start else SETTLED_CONTACT_TOL
        moved = requested.cubes[requested.target]
        if any(moved.overlaps(o, eps=tol) for i, o in enumerate(requested.cubes) if i != requested.target):
            return "inside_tower", distance, None, None, (requested, False, None)
        rest_z = state.resting_z(x, below=z, tol=1e-9 if at_start else SETTLED_CONTACT_TOL)
        placed = state.with_target_at(x, rest_z)
        if abs(rest_z - state.goal_z) > 1e-6:
            return "unstable", distance, None, None, (placed, True, None)  # on the floor: no taller tower
    bodies = _raw_load(c, placed)
    outcome = "stable" if _raw_settle(c, bodies) else "unstable"
    return outcome, distance, None, None, (placed, True, bodies)


def bench_raw(env_id: str, episodes, protocol) -> tuple[float, list]:
    """Seconds for the same episodes as bare pybullet, and each turn's ``(outcome, distance, gain, success,
    next state, image shown)`` (the state kept as the Scene: serialising it here would bill the floor
    for the check)."""
    family, fmt, blocks = _task(env_id)
    interaction, max_turns = protocol
    generator = GENERATORS[family]
    c = p.connect(p.DIRECT)
    records = []
    start = time.perf_counter()
    for seed, answers in episodes:
        scene = generator(np.random.default_rng(seed), blocks)
        bodies = _raw_load(c, scene)
        image = _raw_render(c, 256, False)
        _raw_settle(c, bodies)
        state, at_start, turns = scene, True, []
        for answer in answers:
            outcome, distance, gain, height, result = _raw_judge(c, state, at_start, answer, family, fmt)
            if interaction == "retry" or outcome not in UNMOVED:
                shown, simulate, bodies = result
                if bodies is None:
                    bodies = _raw_load(c, shown)
                if simulate:
                    _raw_rest(c, bodies)
                image = _raw_render(c, 256, False)
                if interaction != "retry":
                    state, at_start = _raw_read(c, bodies, shown), False
            if interaction == "build":
                success = outcome == "stable" and height == len(state.cubes)
                ended = success or outcome == "unstable" or not movable(state)
            else:
                success = outcome == "stable" and distance <= SUCCESS_DISTANCE
                ended = success
            turns.append((outcome, distance, gain, success, state, image))
            if ended or len(turns) >= max_turns:
                break
        records.append(turns)
    elapsed = time.perf_counter() - start
    p.disconnect(physicsClientId=c)
    return elapsed, records


def check_same_work(env_id: str, episodes, reference, records) -> None:
    """Raw and env played the same episodes: turn counts; per turn outcome, reward, success, next state, image."""
    fmt = _task(env_id)[1]
    for (seed, answers), env_turns, raw_turns in zip(episodes, reference, records, strict=True):
        assert len(raw_turns) == len(env_turns) == len(answers), (
            f"{env_id} seed {seed}: raw took {len(raw_turns)} turns, env {len(env_turns)}")
        for turn, (env_turn, raw_turn) in enumerate(zip(env_turns, raw_turns), 1):
            outcome, reward, success, now, image = env_turn
            r_outcome, distance, gain, r_success, r_now, r_image = raw_turn
            if r_outcome in ILLEGAL_REWARD:
                r_reward = ILLEGAL_REWARD[r_outcome]
            elif fmt == "colour_x":
                r_reward = build_reward(r_outcome, gain)
            else:
                r_reward = placement_reward(r_outcome, distance)
            assert (outcome, success) == (r_outcome, r_success) and math.isclose(reward, r_reward, abs_tol=1e-9), (
                f"{env_id} seed {seed} turn {turn}: env {(outcome, reward, success)}, "
                f"raw {(r_outcome, r_reward, r_success)}")
            assert r_now.to_dict() == now, f"{env_id} seed {seed} turn {turn}: the next states differ"
            assert np.array_equal(r_image, image), f"{env_id} seed {seed} turn {turn}: the images differ"


def run(ids, n_episodes: int) -> list[tuple]:
    """``(env id, env steps/s, env episodes/s, raw steps/s, env/raw time, mean turns)`` per id."""
    rows = []
    for env_id in ids:
        episodes, reference, protocol = record(env_id, n_episodes)
        env_s = bench_env(env_id, episodes)
        raw_s, records = bench_raw(env_id, episodes, protocol)
        check_same_work(env_id, episodes, reference, records)
        steps = sum(len(a) for _, a in episodes)
        rows.append((env_id, steps / env_s, len(episodes) / env_s, steps / raw_s, env_s / raw_s,
                     steps / len(episodes)))
    return rows


def print_table(rows) -> None:
    print(f"{'env id':<29} {'env steps/s':>11} {'env eps/s':>9} {'raw steps/s':>11} {'env/raw time':>12} "
          f"{'turns/ep':>8}")
    for env_id, env_steps, env_eps, raw_steps, ratio, turns in rows:
        print(f"{env_id:<29} {env_steps:>11.1f} {env_eps:>9.1f} {raw_steps:>11.1f} {ratio:>12.3f} {turns:>8.2f}")
